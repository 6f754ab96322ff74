"""Training: COCO-format data (real COCO or the synthetic set), the seed's augmentation, targets and the
four trainers (keypoints → detection → prn → activity), each writing its part into one checkpoint.

Entry points: ``model.train.trainers.TRAINERS`` (``posestream train <name>``),
``model.train.show_targets.render_target_sheet`` (``posestream data show --targets``) and
``model.train.samples.extract_poses`` (``posestream data poses``).
"""
