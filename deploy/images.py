"""Container images of the test clusters, built offline from Debian packages.

An image is a ``debootstrap --variant=minbase`` root filesystem with the files of
``deploy/common/`` and ``deploy/<image>/`` copied to ``/opt/kong/``, imported with
``docker import`` as ``kong-test/<image>:<tag>``. The tag is a hash of the build
inputs (suite, package list, recipe version, the files), so an image is rebuilt
only when they change. The root filesystems and the downloaded packages are kept
under ``deploy/.build/`` (or ``$KONG_TEST_BUILD_DIR``): a change of an entrypoint
only re-imports (seconds), a change of the package list re-runs debootstrap from
the package cache (no download).

Each ``deploy/<image>/Dockerfile`` builds the same image for a Docker that can pull
``debian:*``: ``docker build -f deploy/<image>/Dockerfile deploy``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.engine import EngineError, apt_install, ensure_engine, file_lock

DEPLOY_DIR = Path(__file__).resolve().parent
MIRROR = os.environ.get("KONG_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Bump when the build recipe below changes in a way that changes the images.
RECIPE_VERSION = "1"
REPOSITORY = os.environ.get("KONG_TEST_IMAGE_REPOSITORY", "kong-test")


@dataclass(frozen=True)
class ImageSpec:
    name: str
    suite: str
    packages: tuple[str, ...]
    dirs: tuple[str, ...]  # directories of deploy/ copied to /opt/kong/
    # Environment variables through which the container gets its ports besides
    # KONG_SSH_PORT (each a free port chosen at start).
    ports: tuple[str, ...] = ()
    # kong driver of the profiles of such clusters (None: no scheduler).
    driver: str | None = None
    # False for an image that is no test cluster (no sshd, never `testcluster.py up`).
    cluster: bool = True

    @property
    def entrypoint(self) -> str:
        return f"/opt/kong/{self.name}/entrypoint.sh"


SPECS: dict[str, ImageSpec] = {
    "slurm": ImageSpec(
        name="slurm",
        suite="bookworm",
        packages=(
            "openssh-server",
            "slurm-wlm",
            "slurmdbd",
            "mariadb-server",
            "munge",
            "procps",
            "python3",
            "iproute2",
        ),
        dirs=("common", "slurm"),
        ports=("KONG_SLURMCTLD_PORT", "KONG_SLURMD_PORT", "KONG_SLURMDBD_PORT"),
        driver="slurm",
    ),
    "htcondor": ImageSpec(
        name="htcondor",
        suite="trixie",
        packages=(
            "htcondor",
            "openssh-server",
            "procps",
            "python3",
            "python3-cffi-backend",
            "iproute2",
        ),
        dirs=("common", "htcondor"),
        ports=("KONG_CONDOR_PORT",),
        driver="htcondor",
    ),
    "sshd": ImageSpec(
        name="sshd",
        suite="bookworm",
        # rsync: benchmarks/bench_pull.py measures kong pull against it on this host
        packages=("openssh-server", "procps", "python3", "iproute2", "rsync"),
        dirs=("common", "sshd"),
    ),
    # Son of Grid Engine 8.1.9 as Debian packages it: one host is master, exec and
    # submit host, with accounting (qacct); deploy/sge/entrypoint.sh configures it.
    "sge": ImageSpec(
        name="sge",
        suite="bookworm",
        packages=(
            "openssh-server",
            "gridengine-master",
            "gridengine-exec",
            "gridengine-client",
            # gridengine-common needs mailx, bsd-mailx an MTA (a virtual package that
            # debootstrap cannot pick): name a small one.
            "msmtp-mta",
            "procps",
            "python3",
            "iproute2",
        ),
        dirs=("common", "sge"),
        ports=("KONG_SGE_QMASTER_PORT", "KONG_SGE_EXECD_PORT"),
        driver="sge",
    ),
    # The LSF SIMULATOR (deploy/lsf-sim/README.md): IBM LSF cannot be installed here.
    # The sshd image's packages: the simulator is Python scripts on PATH.
    "lsf-sim": ImageSpec(
        name="lsf-sim",
        suite="bookworm",
        packages=("openssh-server", "procps", "python3", "iproute2"),
        dirs=("common", "lsf-sim"),
        driver="lsf",
    ),
    # A stock Debian with only the distribution's Python and what kong's README says
    # to apt-install: tests/test_install.py runs the README's install command in it.
    "debian-python": ImageSpec(
        name="debian-python",
        suite="bookworm",
        packages=("python3", "pipx"),
        dirs=("debian-python",),
        cluster=False,
    ),
}


def build_dir() -> Path:
    return Path(os.environ.get("KONG_TEST_BUILD_DIR", str(DEPLOY_DIR / ".build")))


def _input_files(spec: ImageSpec) -> list[Path]:
    files: list[Path] = []
    for directory in spec.dirs:
        for path in sorted((DEPLOY_DIR / directory).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files.append(path)
    return files


def rootfs_key(spec: ImageSpec) -> str:
    text = "\n".join([spec.suite, MIRROR, *sorted(spec.packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_tag(spec: ImageSpec) -> str:
    digest = hashlib.sha256()
    digest.update(f"{RECIPE_VERSION}\n{spec.suite}\n{' '.join(sorted(spec.packages))}\n".encode())
    for path in _input_files(spec):
        rel = path.relative_to(DEPLOY_DIR).as_posix()
        mode = path.stat().st_mode & 0o111
        digest.update(f"{rel}\0{mode:o}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def image_ref(name: str) -> str:
    spec = SPECS[name]
    return f"{REPOSITORY}/{spec.name}:{image_tag(spec)}"


def image_exists(ref: str) -> bool:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


@dataclass(frozen=True)
class BuildResult:
    ref: str
    cached: bool  # the image was already there
    rootfs_cached: bool  # debootstrap was skipped
    seconds: float


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        out = (result.stdout + result.stderr).strip()[-3000:]
        raise EngineError(f"{what} failed (exit {result.returncode}): {out}")


def _debootstrap(spec: ImageSpec, target: Path, log: Callable[[str], None]) -> None:
    if shutil.which("debootstrap") is None:
        apt_install(["debootstrap"], log)
    cache = build_dir() / "cache" / spec.suite
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--cache-dir={cache}",
        f"--include={','.join(spec.packages)}",
        spec.suite,
        str(tmp),
        MIRROR,
    ]
    log(f"debootstrap {spec.suite} for {spec.name}: {' '.join(spec.packages)}")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        debootstrap_log = tmp / "debootstrap" / "debootstrap.log"
        detail = (
            debootstrap_log.read_text(errors="replace")[-3000:] if debootstrap_log.exists() else ""
        )
        raise EngineError(
            f"debootstrap of {spec.name} failed (exit {result.returncode}): "
            f"{(result.stdout + result.stderr).strip()[-2000:]}\n{detail}"
        )
    tmp.rename(target)
    # Keep only the newest root filesystem of this image.
    for old in target.parent.glob(f"{spec.name}-*"):
        if old != target and old.is_dir() and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)


def _prepare_rootfs(spec: ImageSpec, rootfs: Path) -> None:
    """Strip what must not be in the image and copy the start scripts in."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*", "etc/ssh/ssh_host_*"):
        for path in rootfs.glob(pattern):
            path.unlink()
    opt = rootfs / "opt" / "kong"
    if opt.exists():
        shutil.rmtree(opt)
    for directory in spec.dirs:
        shutil.copytree(DEPLOY_DIR / directory, opt / directory)


def _import(spec: ImageSpec, rootfs: Path, ref: str) -> None:
    tag = ref.rsplit(":", 1)[1]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
    )
    assert tar.stdout is not None
    imp = subprocess.run(
        [
            "docker",
            "import",
            "--change",
            f'CMD ["{spec.entrypoint}"]',
            "--change",
            f"LABEL kong.image={spec.name} kong.inputs={tag}",
            "-",
            ref,
        ],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    tar.stdout.close()
    tar_rc = tar.wait()
    if tar_rc != 0 or imp.returncode != 0:
        raise EngineError(f"import of {ref} failed (tar exit {tar_rc}): {imp.stderr.strip()}")


def prune_images(log: Callable[[str], None] = print) -> list[str]:
    """Remove the images of older inputs (not the current tags) that no container uses.

    Not done after each build: a parallel session may be about to start a
    container from the tag it computed before the inputs changed.
    """
    removed = []
    for spec in SPECS.values():
        removed += _remove_old_tags(spec, image_ref(spec.name), log)
    return removed


def _remove_old_tags(spec: ImageSpec, keep: str, log: Callable[[str], None]) -> list[str]:
    removed = []
    result = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"{REPOSITORY}/{spec.name}"],
        capture_output=True,
        text=True,
        check=False,
    )
    for ref in result.stdout.split():
        if ref != keep:
            # Fails harmlessly while a container still uses it.
            rmi = subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)
            if rmi.returncode == 0:
                log(f"removed {ref}")
                removed.append(ref)
    return removed


def build_image(name: str, log: Callable[[str], None] = print) -> BuildResult:
    """Build ``kong-test/<name>:<tag>`` unless present; safe to call from parallel sessions."""
    if name not in SPECS:
        raise ValueError(f"unknown image {name!r}; known: {', '.join(SPECS)}")
    spec = SPECS[name]
    ensure_engine(log)
    ref = image_ref(name)
    start = time.monotonic()
    if image_exists(ref):
        return BuildResult(ref, True, True, time.monotonic() - start)
    with file_lock(build_dir() / f"{name}.lock"):
        if image_exists(ref):
            return BuildResult(ref, True, True, time.monotonic() - start)
        log(f"building image {ref} ...")
        rootfs = build_dir() / "rootfs" / f"{name}-{rootfs_key(spec)}"
        rootfs_cached = rootfs.is_dir()
        if not rootfs_cached:
            log(f"no cached root filesystem for {name}: debootstrap (about 0.5-3 minutes)")
            _debootstrap(spec, rootfs, log)
        _prepare_rootfs(spec, rootfs)
        _import(spec, rootfs, ref)
    seconds = time.monotonic() - start
    log(f"built {ref} in {seconds:.1f}s ({'cached' if rootfs_cached else 'cold'} root filesystem)")
    return BuildResult(ref, False, rootfs_cached, seconds)


def build_with_dockerfile(name: str, log: Callable[[str], None] = print) -> BuildResult:
    """Build the same image from ``deploy/<name>/Dockerfile`` (needs ``debian:*`` pullable)."""
    ensure_engine(log)
    ref = image_ref(name)
    start = time.monotonic()
    log(f"docker build -t {ref} -f deploy/{name}/Dockerfile deploy")
    _run(
        [
            "docker",
            "build",
            "-t",
            ref,
            "-f",
            str(DEPLOY_DIR / name / "Dockerfile"),
            str(DEPLOY_DIR),
        ],
        f"docker build of {name}",
    )
    return BuildResult(ref, False, False, time.monotonic() - start)
