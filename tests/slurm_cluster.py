"""A real single-node SLURM for the tests (Debian's slurmctld, slurmd and munge; ../shared/FACTS.md):
its configuration in a temporary folder named by ``SLURM_CONF``, two fake GPUs as character
devices. Needs root and the packages (`.ci/run` installs them)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch")


def missing() -> str | None:
    """Why no cluster can be started here, or None."""
    absent = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if absent:
        return f"SLURM is not installed ({', '.join(absent)} missing; .ci/run installs it)"
    if os.geteuid() != 0:
        return "starting SLURM's daemons needs root"
    return None


def _config(folder: Path, host: str) -> str:
    return "\n".join([
        "ClusterName=quanta", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CryptoType=crypto/munge", "MpiDefault=none", "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none", "SchedulerType=sched/backfill", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "ReturnToService=2", "SlurmctldPort=6917", "SlurmdPort=6918",
        f"StateSaveLocation={folder}/ctld", f"SlurmdSpoolDir={folder}/d",
        f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd.log", "GresTypes=gpu",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=4000 Gres=gpu:2 State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""])


def start(folder: Path) -> dict:
    """Start munge (if not running), slurmctld and slurmd configured under ``folder``; the
    environment variables that point SLURM's commands at it."""
    host = socket.gethostname().split(".")[0]
    hosts = Path("/etc/hosts").read_text()
    if host not in hosts.split():
        with open("/etc/hosts", "a") as handle:
            handle.write(f"\n127.0.0.1 {host}\n")
    for sub in ("ctld", "d", "dev"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for index in range(2):  # slurmd accepts only character devices as GPU files
        device = folder / "dev" / f"nvidia{index}"
        if not device.exists():
            os.mknod(device, 0o600 | 0o020000, os.makedev(195, index))
    (folder / "slurm.conf").write_text(_config(folder, host))
    (folder / "gres.conf").write_text(f"AutoDetect=off\nNodeName={host} Name=gpu File={folder}/dev/nvidia[0-1]\n")
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
    env = {"SLURM_CONF": str(folder / "slurm.conf")}
    full = {**os.environ, **env}
    subprocess.run(["slurmctld"], env=full, check=True)
    subprocess.run(["slurmd"], env=full, check=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=full, capture_output=True, text=True).stdout.strip()
        if state in ("idle", "mix", "alloc"):
            return env
        time.sleep(0.5)
    raise RuntimeError(f"SLURM did not come up: sinfo says {state!r}; see {folder}")


def stop(folder: Path) -> None:
    for name in ("slurmd", "slurmctld"):
        pid = folder / f"{name}.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), 15)
            except (OSError, ValueError):
                pass


def wait_for(job_ids: list[str], env: dict, timeout_s: float = 240) -> None:
    """Until none of ``job_ids`` is pending or running."""
    full = {**os.environ, **env}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i"], env=full,
                                capture_output=True, text=True).stdout.split()
        if not queued:
            return
        time.sleep(1)
    raise TimeoutError(f"SLURM jobs {job_ids} still queued after {timeout_s} s")
