"""One reconciler per concern, each owning one or two conditions; `summary` derives Ready from them all."""
