"""The names of the splits, one home for them: the dataset's three, the copies of validation
made from its images, the order a run scores them in, and the validation scores that choose
a run's checkpoint and threshold (docs/frame.md)."""

SPLITS = ("train", "val", "test")
# The carved validation images again, with the training set's confounds turned against
# their labels (stresses.stress): the split that can see a shortcut.
STRESSED_VAL = "stressed_val"
# The stressed images again, with the frame turned against the label too
# (stresses.frame_stress): the split that can see the framing shortcut.
FRAME_VAL = "frame_val"
# The carved validation images reframed whatever their class: each one tighter, looser and with
# a changed border than its own frame, then through the run's input pipeline
# (stresses.REFRAMINGS): the split that sees a frame cue in either direction.
REFRAMED_VAL = "reframed_val"
# The copies of validation made from its images; each has the files of validation.
VALIDATION_COPIES = (STRESSED_VAL, FRAME_VAL, REFRAMED_VAL)
# Every split a run scores after each epoch and at the end, in this order.
EVALUATED_SPLITS = ("val", *VALIDATION_COPIES, "test")
# The splits of history.csv (its column prefixes) and of the training curves, in this order.
CURVE_SPLITS = ("train", *EVALUATED_SPLITS)
# The validation sets whose mean loss picks the checkpoint of `--select-metric pooled_val_loss`,
# and whose pooled predictions pick the threshold of `--threshold-on pooled_val`.
POOLED_VAL = ("val", STRESSED_VAL, REFRAMED_VAL)
POOLED = "pooled_val"
# The validation score that picks best.pt (lowest loss or highest AUC), and the split whose
# predictions pick the decision threshold (Youden's J).
SELECTED_ON = ("val", STRESSED_VAL, FRAME_VAL)
SELECT_METRICS = (
    *(f"{split}_{score}" for split in SELECTED_ON for score in ("loss", "auc")),
    f"{POOLED}_loss",
)
THRESHOLD_SPLITS = ("val", STRESSED_VAL, FRAME_VAL, POOLED)
