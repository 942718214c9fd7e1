"""The bugs the fault campaign found, each with the regression test that fails without its fix (docs/reliability.md).

`make test-faults` counts them in its summary line (`bugs_fixed=<k>`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Bug:
    fault_class: str
    what: str
    regression_test: str  # path::name


FIXED: tuple[Bug, ...] = (
    Bug(
        "Crash after the N-th write (create->Ready)",
        "A first pass killed right after creating the model's certificate (or signing key, or API key) and before its "
        "status write lost the Event saying so for good: the next first pass found the Secret, kept it, and said "
        "nothing (CertificateIssued missing from the end state).",
        "tests/unit/test_new_models_skip_reads_of_what_cannot_exist.py::"
        "test_keys_and_the_certificate_a_failed_first_pass_left_are_kept_and_announced_once",
    ),
    Bug(
        "Crash after the N-th write (certificate renewal->rolled out)",
        "A pass that reissued the server certificate (the runbook's renewal: its Secret deleted) and was killed before "
        "its status write never sent CertificateIssued: the next pass found the new certificate good and said "
        "nothing. CertificateReady now names the served certificate's fingerprint, and a pass that serves another "
        "than the one last reported, without having issued it, says so.",
        "tests/unit/test_tls_rotation_on_a_fake_clock.py::"
        "test_a_reissue_whose_pass_stopped_before_its_status_write_is_announced_by_the_next_pass",
    ),
    Bug(
        "Schema mutations",
        "A spec whose engine key changed while its build Job ran (changed again, or restored) left that Job running "
        "with its store upload grant: it held a node up to its deadline (an hour by default) and would publish an "
        "engine no spec asks for. Every engine-key mutation restored to the base left one (an extra Job in the end "
        "state).",
        "tests/unit/test_engine_stops_builds_the_spec_no_longer_asks_for.py::"
        "test_a_build_for_a_key_the_spec_left_is_stopped_with_its_grant",
    ),
    Bug(
        "Schema mutations",
        "A toleration the API server refuses in a pod (no key without operator Exists, a value with Exists, "
        "tolerationSeconds without effect NoExecute) was admitted: every pass then stalled on the Triton "
        "Deployment's refusal, observedGeneration stayed behind and no condition said why. The CRD now refuses "
        "them, naming spec.target.tolerations.",
        "tests/unit/test_api_rejects_invalid_specs.py::"
        "test_invalid_spec_is_rejected_naming_the_field[toleration-without-key-or-exists]",
    ),
)
