"""The test bed starts a component again, once, when Go's runtime ended it on a concurrent map access during
start-up (an upstream race, met in kubelet 1.34.4); any other exit, or a second one, still stops the start."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from testbed import cluster

RACE = "fatal error: concurrent map iteration and map write\n\ngoroutine 435 [running]:\n"


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def _bed(tmp_path: pathlib.Path, log_text: str) -> tuple[cluster.Testbed, dict[str, object]]:
    bed = cluster.Testbed(tmp_path)
    bed.log_dir.mkdir(parents=True, exist_ok=True)
    log = bed.log_dir / "kubelet.log"
    log.write_text(log_text)
    process: dict[str, object] = {"name": "kubelet", "pid": _dead_pid(), "log": str(log), "argv": ["sleep", "30"]}
    bed._processes = [process]
    return bed, process


def test_a_map_race_in_start_up_restarts_the_component_once(tmp_path: pathlib.Path) -> None:
    bed, process = _bed(tmp_path, "I1207 starting\n" + RACE)
    bed._check_processes()
    assert process["restarted"] is True and cluster._alive(int(str(process["pid"])))
    pid = int(str(process["pid"]))
    os.kill(pid, 9)
    os.waitpid(pid, 0)  # reaped, as the test bed's parent would: a zombie still answers kill(pid, 0)
    with pytest.raises(RuntimeError, match="kubelet exited during start-up"):
        bed._check_processes()  # dead again: no second restart


def test_any_other_exit_stops_the_start(tmp_path: pathlib.Path) -> None:
    bed, _ = _bed(tmp_path, "E1207 failed to run Kubelet: misconfiguration\n")
    with pytest.raises(RuntimeError, match="misconfiguration"):
        bed._check_processes()
