"""The report's figures: training curves, ROC, confusion, Grad-CAM, data and robustness figures."""
