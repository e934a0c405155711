"""The networks: backbones, classifier heads, the branches, the segmenter, joint training."""
