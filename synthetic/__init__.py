"""The project's own synthetic data and the detector trained on it, shared by the tests, the demo and the benches.

- `shapes`: the deterministic generator of the shapes dataset (images and YOLO labels, from a seed).
- `detector`: the committed detector (`models/shapes-yolov8n.pt`) and the dataset it was trained and scored on.
- `train_detector`: how that checkpoint was made (`python -m synthetic.train_detector`).

Not the product: `kestrel` never imports it (pyproject's import contracts).
"""
