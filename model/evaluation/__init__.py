"""Evaluation: COCO keypoint/box AP of the whole pipeline, PRN alone on ground-truth peaks, activity
cross-validation, and the writers of their JSON + Markdown reports.

* ``coco_eval``   — the pipeline over a COCO-format split → COCO results → pycocotools ``COCOeval``;
* ``prn_eval``    — PRN with ground-truth keypoints as its peaks (the MultiPoseNet paper's 89.4 AP setting),
  on a COCO-format split and on real COCO poses overlaid several to a box;
* ``activity_cv`` — stratified 5-fold cross-validation of the activity MLP (the seed's 20 % per fold);
* ``report``      — results as JSON and a Markdown table;
* ``demo_weights`` — the ``make demo-weights`` recipe (synthetic set → four trainers → eval → fp16).
"""
