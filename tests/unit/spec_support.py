"""What a test's spec needs when the test is not about the validation gate."""

from __future__ import annotations

from typing import Any

# The API requires a validation dataset or an explicit skip (spec.validation): a spec of a test that checks
# something else says so in the one way the API allows.
UNMEASURED: dict[str, Any] = {"skip": {"reason": "a test's spec: accuracy is not what this test checks"}}
