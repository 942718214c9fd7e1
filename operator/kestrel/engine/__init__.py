"""The engine builder: what runs inside the build Job (`kestrel build`). Never talks to the Kubernetes API.

pipeline      spec -> fetch -> (prune, fine-tune | distill) -> export each candidate -> validate -> gate -> repository
              -> report
fetch         source checkpoint to disk, sha256 verified while streaming (file://, pvc://, https://, and s3://
              through the engine store's own S3 client, storage/s3.py)
prune         structured pruning (channels removed) with torch-pruning
finetune      train the pruned model itself on a training split, at the size the source was trained at
distill       a narrower student (the pruned source) trained against the source as its teacher
export        Ultralytics export per format/precision; quantize: ONNX Runtime static INT8
runners       run source or engine on a preprocessed batch (raw outputs)
accuracy      mAP through the served pre/postprocessing; validate: parity and preprocessing fingerprint
profile       latency percentiles and throughput; gate: the verdict with every number
report        result.json (termination message) and manifest.json
offline       Ultralytics/OpenVINO set up to never reach the network
progress      `kestrel-progress` lines in the build's log, which the operator mirrors into status.build
"""
