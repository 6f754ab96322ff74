"""Synthetic people in COCO keypoint format: still datasets, moving sequences and contact sheets.

Public entry points: ``model.data.synth.generate_dataset``, ``model.data.sequence.generate_sequence``,
``model.data.sequence.iter_sequence_frames`` and ``model.data.show.make_contact_sheet``.
"""
