"""Regenerate sample_images/targets and sample_images/recons (deterministic, offline).

Targets are small crops/downscales of photos bundled in the scikit-image wheel and a few 8x8
digits from scikit-learn's bundled copy of the UCI digits test set. Reconstructions come from
linear autoencoders (PCA): photos go through one PCA fitted on the 8x8 patches of all photos and
keep k components (k differs per image: one near-perfect, one very poor); digits go through a PCA
fitted on all 1797 digits. See README.md.

    python3 -m venv /tmp/samplevenv
    /tmp/samplevenv/bin/pip install numpy pypng scikit-image scikit-learn
    /tmp/samplevenv/bin/python sample_images/make_samples.py
"""

from pathlib import Path

import numpy as np
import png
from skimage import data
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
TARGETS, RECONS, BATCHES = HERE / "targets", HERE / "recons", HERE / "batches"
P = 8  # patch size of the photo autoencoder

# name: (skimage loader, crop (top, left, side), block-average factor, colour?, target bits, k, recon format)
# The crop is averaged over factor x factor blocks down to side/factor = 64 pixels a side.
PHOTOS = {
    "astronaut": (data.astronaut, (0, 0, 512), 8, True, 8, 1, "png16"),  # worst: 1 component
    "coffee": (data.coffee, (0, 100, 384), 6, True, 8, 4, "png16"),
    "chelsea": (data.chelsea, (20, 130, 256), 4, False, 8, 6, "npy"),
    "camera": (data.camera, (0, 0, 512), 8, False, 16, 40, "png16"),  # near-perfect: 40 of 64
}
DIGITS = {"digit_0": (0, "png16"), "digit_3": (3, "png8"), "digit_6": (6, "png16")}  # index: sample
DIGIT_K = 12


def downscale(img, crop, factor):
    """Crop a square and average factor x factor blocks; float in [0, 1], shape (h, w, c)."""
    top, left, side = crop
    img = img[top : top + side, left : left + side].astype(np.float64) / 255
    img = img.reshape(side // factor, factor, side // factor, factor, -1)
    return img.mean(axis=(1, 3))


def write_png(path, img, bits):
    """img float in [0, 1], shape (h, w, c), c = 1 or 3; 8 or 16 bits a sample, written by pypng."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w, c = img.shape
    ints = np.round(img * (2**bits - 1)).astype(np.uint16 if bits == 16 else np.uint8)
    writer = png.Writer(w, h, greyscale=c == 1, bitdepth=bits)
    with path.open("wb") as f:
        writer.write(f, ints.reshape(h, w * c).tolist())


def write_recon(stem, img, fmt):
    img = np.clip(img, 0.0, 1.0)
    if fmt == "npy":
        path = RECONS / f"{stem}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, img.astype(np.float32), allow_pickle=False)
    else:
        write_png(RECONS / f"{stem}.png", img, 16 if fmt == "png16" else 8)


def to_patches(channel):
    """(H, W) -> (H/P * W/P, P*P) non-overlapping patches."""
    h, w = channel.shape
    return channel.reshape(h // P, P, w // P, P).swapaxes(1, 2).reshape(-1, P * P)


def from_patches(patches, h, w):
    return patches.reshape(h // P, w // P, P, P).swapaxes(1, 2).reshape(h, w)


def pca(rows):
    """Mean and principal axes (rows of the returned matrix, by decreasing variance)."""
    mean = rows.mean(axis=0)
    _, _, axes = np.linalg.svd(rows - mean, full_matrices=False)
    return mean, axes


def autoencode(rows, mean, axes, k):
    """Encode to k coefficients and decode: the linear autoencoder of PCA."""
    code = (rows - mean) @ axes[:k].T
    return code @ axes[:k] + mean


def main():
    targets = {}
    for name, (loader, crop, factor, colour, bits, _, _) in PHOTOS.items():
        img = downscale(loader(), crop, factor)
        if not colour and img.shape[2] == 3:
            img = (img @ [0.299, 0.587, 0.114])[:, :, None]
        write_png(TARGETS / f"{name}.png", img, bits)
        targets[name] = np.round(img * (2**bits - 1)) / (2**bits - 1)  # exactly what was stored

    # One patch PCA for all photos: every channel of every photo is a grey image of 8x8 patches.
    channels = [t[:, :, c] for t in targets.values() for c in range(t.shape[2])]
    mean, axes = pca(np.vstack([to_patches(ch) for ch in channels]))
    for name, (*_, k, fmt) in PHOTOS.items():
        t = targets[name]
        h, w, c = t.shape
        rec = [from_patches(autoencode(to_patches(t[:, :, i]), mean, axes, k), h, w) for i in range(c)]
        write_recon(name, np.stack(rec, axis=2), fmt)

    digits = load_digits().images / 16  # (1797, 8, 8), values 0..16
    rows = digits.reshape(len(digits), -1)
    mean, axes = pca(rows)
    for name, (index, fmt) in DIGITS.items():
        write_png(TARGETS / "digits" / f"{name}.png", digits[index][:, :, None], 8)
        rec = autoencode(rows[index], mean, axes, DIGIT_K).reshape(8, 8, 1)
        write_recon(f"digits/{name}", rec, fmt)
    write_batches(digits, rows, mean, axes)


def write_batches(digits, rows, mean, axes):
    """The first 20 digits as one batch file each side, as a training loop writes them: targets
    uint8 items x height x width x channels, reconstructions float32 channels first (NCHW)."""
    BATCHES.mkdir(parents=True, exist_ok=True)
    first = slice(0, 20)
    targets = np.round(digits[first] * 255).astype(np.uint8)[:, :, :, None]
    recons = np.clip(autoencode(rows[first], mean, axes, DIGIT_K), 0.0, 1.0).reshape(-1, 1, 8, 8)
    np.save(BATCHES / "digits_targets.npy", targets, allow_pickle=False)
    np.save(BATCHES / "digits_recons.npy", recons.astype(np.float32), allow_pickle=False)


if __name__ == "__main__":
    main()
