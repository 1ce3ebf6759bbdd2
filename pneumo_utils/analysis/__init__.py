"""What a trained run is checked with: test scoring, the robustness suite, the shortcut audit,
Grad-CAM."""
