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
# The view blocks (stresses.VIEW_STRESSES, docs/frame.md round 4): the carved validation images
# once each way, whatever their class: a tighter view into the body's box and a grey or white
# band inside it, both on the model's input square where the input pipeline cannot undo them,
# and a looser view as acquired, then through the pipeline.
TIGHTER_VAL = "tighter_val"
BAND_VAL = "band_val"
LOOSER_VAL = "looser_val"
VIEW_VAL = (TIGHTER_VAL, BAND_VAL, LOOSER_VAL)
# Round 8's block (docs/frame.md): the tighter view again, past the training range of the
# headline's framing variety, where validation's NORMAL images reach the threshold.
FAR_TIGHTER_VAL = "far_tighter_val"
# The copies of validation made from its images; each has the files of validation.
VALIDATION_COPIES = (STRESSED_VAL, FRAME_VAL, REFRAMED_VAL, *VIEW_VAL, FAR_TIGHTER_VAL)
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
# The worst-block rule (docs/frame.md, round 4): each of these validation sets is a block of
# its own; the threshold is the one whose worst block has the highest balanced accuracy, and
# that balanced accuracy (`worst_block_bacc`, higher is better) picks the checkpoint.
WORST_BLOCKS = ("val", STRESSED_VAL, *VIEW_VAL)
WORST_BLOCK = "worst_block"
# The family rule (docs/frame.md, round 5): the same, with each of those blocks split by NORMAL
# file family (NORMAL2-* and IM-*, each with all the block's other images), so that a family
# that lags is scored on its own instead of inside a block where the other family hides it.
WORST_FAMILY_BLOCK = "worst_family_block"
# The far rule (docs/frame.md, round 8): the family rule with the far tighter view among its
# blocks, which extend WORST_BLOCKS.
FAR_RULE_BLOCKS = (*WORST_BLOCKS, FAR_TIGHTER_VAL)
FAR_FAMILY_BLOCK = "far_family_block"
# The blocks each worst-block rule takes the worst of, and the rules that split each block by
# NORMAL file family.
BLOCKS_OF_RULE = {WORST_BLOCK: WORST_BLOCKS, WORST_FAMILY_BLOCK: WORST_BLOCKS,
                  FAR_FAMILY_BLOCK: FAR_RULE_BLOCKS}  # fmt: skip
FAMILY_RULES = (WORST_FAMILY_BLOCK, FAR_FAMILY_BLOCK)
# Every validation block that a family rule splits by NORMAL file family, each once.
FAMILY_BLOCKS = tuple(
    dict.fromkeys(block for rule in FAMILY_RULES for block in BLOCKS_OF_RULE[rule])
)
SELECT_METRICS = (
    *(f"{split}_{score}" for split in SELECTED_ON for score in ("loss", "auc")),
    f"{POOLED}_loss",
    f"{WORST_BLOCK}_bacc",
    f"{WORST_FAMILY_BLOCK}_bacc",
    f"{FAR_FAMILY_BLOCK}_bacc",
)
THRESHOLD_SPLITS = (
    "val", STRESSED_VAL, FRAME_VAL, POOLED, WORST_BLOCK, WORST_FAMILY_BLOCK, FAR_FAMILY_BLOCK
)  # fmt: skip
