"""What a trained run is checked with: test scoring, patient-bootstrap intervals, the
robustness suite and its perturbations, the shortcut audit, Grad-CAM, the data's tables."""
