"""Feature extractors with real weights, RGB image traits, and the metrics against direct
reference computations on small arrays."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from chain_runner import metrics
from chain_runner.config import FeaturesConfig
from chain_runner.features import (EfficientNetLite0Extractor, InceptionExtractor,
                                   image_traits_rgb)
from qtrait.errors import QtraitError

skimage_data = pytest.importorskip("skimage.data")


def photos():
    from PIL import Image

    out = []
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        img = Image.fromarray(getattr(skimage_data, name)()).convert("RGB")
        out.append(np.asarray(img.resize((256, 256), Image.BICUBIC)))
    return np.stack(out)


def test_efficientnet_lite0_real_weights_recognise_real_photos():
    import torch

    torch.set_num_threads(1)
    ex = EfficientNetLite0Extractor(FeaturesConfig(extractor="efficientnet_lite0",
                                                   batch_size=4), torch.device("cpu"))
    imgs = photos()
    logits = ex.logits(imgs)
    top = logits.argmax(axis=1)
    # ImageNet: 281-285 cats (chelsea is a tabby), 967 espresso / 968 cup; the rocket has
    # 657 missile or 744 projectile among its top 3
    assert 281 <= top[0] <= 285 and top[1] in (967, 968)
    assert {657, 744} & set(np.argsort(logits[3])[-3:].tolist())
    phi = ex.embed(imgs)
    assert phi.shape == (4, 1280) and np.isfinite(phi).all()
    # the cat is nearer the cat re-cropped than the coffee is
    again = ex.embed(np.ascontiguousarray(imgs[:1, 16:240, 16:240]))
    assert np.linalg.norm(again[0] - phi[0]) < np.linalg.norm(again[0] - phi[1])


def test_rgb_traits_against_direct_computation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    img[1] = 128  # grey: no saturation, colour, contrast, frequencies or edges
    t = image_traits_rgb(img)
    x = img[0].astype(float) / 255
    sat = np.mean([(p.max() - p.min()) / p.max() if p.max() > 0 else 0
                   for p in x.reshape(-1, 3)])
    rg, yb = x[..., 0] - x[..., 1], 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    col = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    y = x @ np.array([0.299, 0.587, 0.114])
    spec = np.abs(np.fft.fft2(y - y.mean())) ** 2
    hf = sum(spec[i, j] for i in range(8) for j in range(8)
             if np.hypot(min(i, 8 - i) / 8, min(j, 8 - j) / 8) > 0.25) / spec.sum()
    lap = [y[i - 1, j] + y[i + 1, j] + y[i, j - 1] + y[i, j + 1] - 4 * y[i, j]
           for i in range(1, 7) for j in range(1, 7)]
    np.testing.assert_allclose(t[0], [sat, col, y.std(), hf, np.var(lap)], rtol=1e-10)
    np.testing.assert_allclose(t[1], 0.0, atol=1e-12)


def test_frechet_distance_against_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200, 4))
    b = rng.normal(size=(150, 4)) @ rng.normal(size=(4, 4)) + 0.5
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2)
           - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2))))
    assert metrics.frechet_distance(a, b) == pytest.approx(ref, rel=1e-9)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # singular covariances (fewer samples than features) stay finite
    assert np.isfinite(metrics.frechet_distance(a[:3], b[:3]))


def test_prdc_against_a_direct_loop():
    rng = np.random.default_rng(2)
    real, fake, k = rng.normal(size=(30, 3)), rng.normal(0.7, 1.2, size=(25, 3)), 3

    def radius(x, i):
        return sorted(np.linalg.norm(x - x[i], axis=1))[k]

    rr = [radius(real, i) for i in range(len(real))]
    fr = [radius(fake, j) for j in range(len(fake))]
    d = lambda i, j: np.linalg.norm(real[i] - fake[j])  # noqa: E731
    R, F = range(len(real)), range(len(fake))
    ref = {"precision": np.mean([any(d(i, j) < rr[i] for i in R) for j in F]),
           "recall": np.mean([any(d(i, j) < fr[j] for j in F) for i in R]),
           "density": np.mean([sum(d(i, j) < rr[i] for i in R) for j in F]) / k,
           "coverage": np.mean([min(d(i, j) for j in F) < rr[i] for i in R])}
    got = metrics.prdc(real, fake, k)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert metrics.prdc(real, real, k)["precision"] == 1.0


def test_vendi_against_the_entropy_of_the_kernel():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 5))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    lam = np.linalg.eigvalsh(u @ u.T / 12)
    lam = lam[lam > 1e-12]
    assert metrics.vendi(x) == pytest.approx(np.exp(-np.sum(lam * np.log(lam))), rel=1e-10)
    assert metrics.vendi(np.ones((6, 3))) == pytest.approx(1.0)
    assert metrics.vendi(np.eye(4)) == pytest.approx(4.0)


def test_clip_score_is_named_and_computed(sd_assets):
    import torch

    from chain_runner.features import OpenClipExtractor

    f = FeaturesConfig(clip_config=str(sd_assets["clip_config"]),
                       clip_pretrained=str(sd_assets["clip_ckpt"]), batch_size=2)
    ex = OpenClipExtractor(f, torch.device("cpu"))
    imgs = photos()[:, ::8, ::8]
    phi = ex.embed(imgs)
    np.testing.assert_allclose(np.linalg.norm(phi, axis=1), 1.0, rtol=1e-6)
    texts = ["a cat", "a cup", "a cat", "a rocket"]
    t = ex.embed_text(texts)
    ref = 100 * np.maximum((phi * t).sum(1), 0)
    np.testing.assert_allclose(ex.clip_score(phi, texts), ref, rtol=1e-6)
    assert ex.clip_variant == ("100*max(cos(image, text), 0), open_clip tiny-clip "
                               f"({sd_assets['clip_ckpt']})")
    m = metrics.generation_metrics(phi, phi[::-1], k=2, clip_scores=ref,
                                   clip_variant=ex.clip_variant)
    assert m["clip_score"] == pytest.approx(ref.mean())
    assert m["clip_score_variant"] == ex.clip_variant


@pytest.mark.slow  # the full Inception v3 at 299 px: about 80 s on the 2-core machine
def test_inception_fid_from_a_local_weights_file(tmp_path):
    import torch

    from chain_runner.features import fid_inception_architecture

    with pytest.raises(QtraitError, match="no such Inception weights file"):
        InceptionExtractor(tmp_path / "missing.pth", torch.device("cpu"))
    torch.manual_seed(0)
    path = tmp_path / "pt_inception.pth"
    torch.save(fid_inception_architecture().state_dict(), path)  # the standard file's keys
    ex = InceptionExtractor(path, torch.device("cpu"), batch_size=4)
    imgs = photos()[:, ::4, ::4]
    f = ex.embed(imgs)
    assert f.shape == (4, 2048) and np.isfinite(f).all()
    m = metrics.generation_metrics(f, f[::-1], k=2, reference_inception=f, inception=f[:2])
    assert m["inception_fid"] == pytest.approx(metrics.frechet_distance(f, f[:2]))
    assert np.isfinite(m["inception_kid_mean"]) and "clean-fid" in m["inception_convention"]
    # the images reach the network through clean-fid's own resizer (PIL bicubic, float32)
    from cleanfid.resize import make_resizer
    ref = make_resizer("PIL", False, "bicubic", (299, 299))(imgs[0])
    np.testing.assert_array_equal(ex.resize(imgs[0]), ref)


def test_missing_clip_weights_are_a_clear_error(tmp_path):
    """Named open_clip weights that are neither cached nor downloadable (the hub offline)
    give one clear line with what to do, not a traceback."""
    import subprocess
    import sys

    code = ("from chain_runner.config import FeaturesConfig\n"
            "from chain_runner.features import OpenClipExtractor\n"
            "from qtrait.errors import QtraitError\n"
            "import torch\n"
            "try:\n"
            "    OpenClipExtractor(FeaturesConfig(clip_model='RN50', "
            "clip_pretrained='openai'), torch.device('cpu'))\n"
            "except QtraitError as e:\n"
            "    print('QtraitError:', e.message, '|', e.hint)\n")
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert "QtraitError: cannot load open_clip RN50 (openai)" in res.stdout, res.stderr[-2000:]
    assert "features.clip_pretrained" in res.stdout and "Traceback" not in res.stderr
