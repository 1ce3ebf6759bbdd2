"""What the project assumes of ResNet-18, in one place and without torch (the command line's
flags read it): the two starts, the stages that freezing counts, the head's layout, the block
Grad-CAM explains, and the ImageNet weights and statistics the pretrained start expects."""

# The two starts of the report: random weights, or torchvision's ImageNet weights.
MODEL_NAMES = ("scratch", "pretrained")
# Stages in forward order; freezing "below layer3" freezes the stem, layer1 and layer2.
STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")
FREEZE_CHOICES = ("none", "backbone", *STAGES[1:])
# The head: Dropout then Linear, so its weights are fc.1.*, where torchvision's plain head has fc.*.
HEAD_PREFIX, TORCHVISION_HEAD_PREFIX = "fc.1.", "fc."
# Grad-CAM explains the output of the last residual block.
LAST_STAGE = STAGES[-1]
# torchvision's ImageNet weights file (its SHA-256 starts with the name's hash prefix), and the
# statistics every input is normalised with.
IMAGENET_WEIGHTS_FILE = "resnet18-f37072fd.pth"
OFFICIAL_SHA256_PREFIX = "f37072fd"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
