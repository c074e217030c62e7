"""The dual-camera rig: intrinsics of both cameras, the rotation between them, and the homographies.

Convention: the rig is calibrated in a ``frame_width`` x ``frame_height`` pixel frame (the authors':
1920 x 1208). ``pixel_60_from_120 = K60 @ R.T @ inv(K120)`` maps a 120-camera pixel to the 60-camera pixel
that sees the same (distant) point. Normalised homographies map ``[-1, 1]`` coordinates; a feature map that
covers the frame at scale s has the same normalised homography at every s, so one matrix serves every
pyramid level. ``src_from_dst`` is kornia's ``src_homo_dst``: it maps a destination point to its source.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from semshare.errors import SemshareError

# The authors' calibration (light/map/warp.py and warp_xy.py).
_K60 = ((1796.6985372203135, 0.0, 982.1333137421029), (0.0, 1793.8563682988065, 696.3526269889819), (0.0, 0.0, 1.0))
_K120 = ((967.1103975517259, 0.0, 967.1468712919049), (0.0, 964.5298875990683, 629.2707542395874), (0.0, 0.0, 1.0))
_EULER_XYZ = (-0.01, 0.01, 0.005)  # radians; R = Rz @ Ry @ Rx


RIG_KEYS = ("k60", "k120", "euler_xyz", "frame_width", "frame_height")
#: Plausible focal lengths, as a multiple of the frame width: from a ~160 degree fisheye to a ~3 degree telephoto.
FOCAL_RANGE = (0.1, 20.0)


def _numbers(value: object, shape: tuple[int, ...], key: str, source: str, what: str) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape``; SemshareError naming the key otherwise."""
    def numeric(v: object) -> bool:  # JSON numbers only: no strings ("1.5" would convert), no booleans
        if isinstance(v, (list, tuple)):
            return all(numeric(x) for x in v)
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not numeric(value):
        raise SemshareError(f"{source}: {key} must be {what} (numbers only), got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except ValueError:  # ragged rows
        raise SemshareError(f"{source}: {key} must be {what}, but its rows differ in length: {value!r}") from None
    if arr.shape != shape:
        raise SemshareError(f"{source}: {key} must be {what}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise SemshareError(f"{source}: {key} holds a non-finite value (NaN/Infinity); give real numbers")
    return arr


def _intrinsics(value: object, key: str, source: str, width: int, height: int) -> np.ndarray:
    """A camera matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with plausible focal lengths and centre."""
    k = _numbers(value, (3, 3), key, source, "a 3x3 camera matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]")
    if not np.allclose(k[2], (0.0, 0.0, 1.0)) or abs(k[1, 0]) > 1e-9:
        raise SemshareError(f"{source}: {key} must be an intrinsic matrix: last row [0, 0, 1] and k[1][0] = 0, "
                            f"got {k.tolist()}")
    lo, hi = FOCAL_RANGE
    for name, f in (("fx", k[0, 0]), ("fy", k[1, 1])):
        if not lo * width <= f <= hi * width:
            raise SemshareError(f"{source}: {key} focal length {name} = {f:g} px is implausible for a {width} px wide "
                                f"frame (expected {lo * width:g}..{hi * width:g}); is the matrix for this frame size?")
    if not (0 <= k[0, 2] <= width and 0 <= k[1, 2] <= height):
        raise SemshareError(f"{source}: {key} principal point ({k[0, 2]:g}, {k[1, 2]:g}) lies outside the "
                            f"{width}x{height} frame; is the matrix for this frame size?")
    if abs(np.linalg.det(k)) < 1e-9:
        raise SemshareError(f"{source}: {key} is not invertible")
    return k


def _rotation_zyx(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    r_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    r_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return r_z @ r_y @ r_x


def normalize_homography(pixel_h: np.ndarray, width: float, height: float) -> np.ndarray:
    """``T @ H @ inv(T)`` with ``T`` mapping pixels in [0, width] x [0, height] onto [-1, 1]."""
    t = np.array([[2.0 / width, 0.0, -1.0], [0.0, 2.0 / height, -1.0], [0.0, 0.0, 1.0]])
    return t @ pixel_h @ np.linalg.inv(t)


@dataclass(frozen=True)
class Rig:
    """Calibration of the 60-degree / 120-degree camera pair."""

    k60: tuple[tuple[float, float, float], ...] = _K60
    k120: tuple[tuple[float, float, float], ...] = _K120
    euler_xyz: tuple[float, float, float] = _EULER_XYZ
    frame_width: int = 1920
    frame_height: int = 1208

    @classmethod
    def default(cls) -> Rig:
        """The authors' rig (the released checkpoints were trained with it)."""
        return cls()

    @classmethod
    def from_file(cls, path: str | Path) -> Rig:
        """Load a rig from JSON or YAML with keys k60, k120 (3x3), euler_xyz (radians), frame_width/height."""
        from semshare.validate import check_input_file

        path = check_input_file(path, "rig file", "pass a JSON/YAML file with k60, k120, euler_xyz, frame_width, frame_height")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SemshareError(f"cannot read rig file {path}: {exc}; pass a JSON/YAML text file") from None
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                try:
                    import yaml
                except ImportError:
                    raise SemshareError("YAML rig files need PyYAML: pip install pyyaml (or use JSON)") from None
                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except (ValueError, Exception) as exc:  # json.JSONDecodeError / yaml.YAMLError
            if isinstance(exc, SemshareError):
                raise
            raise SemshareError(f"rig file {path} is not valid JSON/YAML ({exc}); fix its syntax") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: object, source: str = "rig") -> Rig:
        """A rig from a complete mapping: every key present, numeric, and physically sane. Nothing is filled in
        from the authors' rig (a missing key is an error), so the file says everything the homographies use."""
        if not isinstance(data, dict):
            raise SemshareError(f"{source}: expected a mapping with keys {', '.join(RIG_KEYS)}")
        unknown = set(data) - set(RIG_KEYS)
        if unknown:
            raise SemshareError(f"{source}: unknown keys {sorted(unknown)}; allowed: {list(RIG_KEYS)}")
        missing = [k for k in RIG_KEYS if k not in data]
        if missing:
            raise SemshareError(f"{source}: missing {', '.join(missing)}; a rig file must give all of "
                                f"{', '.join(RIG_KEYS)} (semshare does not fill in the authors' values)")
        kw: dict[str, object] = {}
        for key in ("frame_width", "frame_height"):
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise SemshareError(f"{source}: {key} must be an integer >= 2 (pixels), got {v!r}")
            kw[key] = v
        for key in ("k60", "k120"):
            kw[key] = tuple(map(tuple, _intrinsics(data[key], key, source, kw["frame_width"], kw["frame_height"])))
        e = _numbers(data["euler_xyz"], (3,), "euler_xyz", source, "three angles in radians (rx, ry, rz)")
        if (np.abs(e) > math.pi).any():
            raise SemshareError(f"{source}: euler_xyz {e.tolist()} must be radians within [-pi, pi]; degrees given?")
        kw["euler_xyz"] = tuple(float(v) for v in e)
        return cls(**kw)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(map(list, v)) if k in ("k60", "k120") else list(v) if k == "euler_xyz" else v)
                for k, v in d.items()}

    @property
    def rotation(self) -> np.ndarray:
        return _rotation_zyx(*self.euler_xyz)

    def pixel_60_from_120(self) -> np.ndarray:
        """H = K60 @ R.T @ inv(K120), in frame pixels (float64)."""
        return np.asarray(self.k60) @ self.rotation.T @ np.linalg.inv(np.asarray(self.k120))

    def normalized_60_from_120(self, frame: tuple[float, float] | None = None) -> np.ndarray:
        """The pixel homography in normalised coordinates of a (width, height) frame (the rig's by default)."""
        w, h = frame if frame is not None else (self.frame_width, self.frame_height)
        return normalize_homography(self.pixel_60_from_120(), w, h)

    def homographies(self, frame: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
        """Both warp directions as ``src_from_dst`` matrices (float64, 3x3):

        - ``"120_from_60"``: for a warp whose output is the 60 view, sampling a 120-view input (the authors'
          '120_60' direction);
        - ``"60_from_120"``: for a warp whose output is the 120 view, sampling a 60-view input ('60_120').
        """
        n = self.normalized_60_from_120(frame)
        return {"120_from_60": np.linalg.inv(n), "60_from_120": n}
