"""`v1sweep corrupt --dataset D --out DIR`: materialize a corrupted test set and a preview grid."""
from __future__ import annotations

import argparse

HELP = "materialize a corrupted test set (CIFAR-10-C layout) and save a preview grid PNG"

_NATIVE_SIZE = {"cifar10": 32, "synthetic": 32, "tinyimagenet": 64}


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic", help="synthetic | cifar10 | tinyimagenet | imagefolder")
    parser.add_argument("--data-path", default=None, metavar="P", help="dataset root (not for synthetic)")
    parser.add_argument("--image-size", type=int, default=None, metavar="N",
                        help="pixels (default: 32 for synthetic/cifar10, 64 for tinyimagenet)")
    parser.add_argument("--max-images", type=int, default=None, metavar="N",
                        help="test images to corrupt (default: all; synthetic: 500)")
    parser.add_argument("--corruptions", default=None, metavar="A,B",
                        help="comma-separated names (default: all 19); see the catalog in docs/corruptions.md")
    parser.add_argument("--severities", type=_int_list, default=[1, 2, 3, 4, 5], metavar="1,2",
                        help="severities 1-5 (default: all)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="corruption randomness (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    parser.add_argument("--frost", choices=("published", "procedural"), default="published",
                        help="frost textures: the published photographs (default) or procedural")
    parser.add_argument("--storage", choices=("published", "lossless"), default="published",
                        help="published: uint8 truncation (+ JPEG q85 for the 64-px table), as the published "
                             "sets; lossless: rounding (default published)")
    parser.add_argument("--preview-index", type=int, default=0, metavar="I",
                        help="test image shown in the preview grid (default 0)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for <name>.npy, labels.npy, manifest.json and preview.png")


def preview_grid(folder, names: list[str], severities: list[int], clean, index: int, path,
                 tile: int = 96) -> None:
    """PNG: one row per corruption, the clean image then severities 1-5 across (blank if absent)."""
    import numpy as np
    from PIL import Image, ImageDraw

    from v1sweep.corruptions.readers import GeneratedSource

    n = int(clean.shape[0])
    label_w, head_h, pad = 140, 22, 4
    cols = 6
    grid = Image.new("RGB", (label_w + cols * (tile + pad), head_h + len(names) * (tile + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for j, title in enumerate(["clean"] + [f"severity {s}" for s in range(1, 6)]):
        draw.text((label_w + j * (tile + pad) + 4, 5), title, fill="black")

    def tile_of(chw) -> Image.Image:
        arr = np.ascontiguousarray(np.asarray(chw).transpose(1, 2, 0))
        return Image.fromarray(arr).resize((tile, tile), Image.Resampling.NEAREST)

    source = GeneratedSource(folder, names, severities)
    for i, name in enumerate(names):
        y = head_h + i * (tile + pad)
        draw.text((4, y + tile // 2 - 6), name, fill="black")
        grid.paste(tile_of(clean[index % n].numpy()), (label_w, y))
        for s in severities:
            images, _ = source.load(name, s)
            grid.paste(tile_of(images[index % n].numpy()), (label_w + s * (tile + pad), y))
    grid.save(path)


def main(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from v1sweep.config.trial import DataConfig
    from v1sweep.corruptions.catalog import CORRUPTIONS
    from v1sweep.corruptions.materialize import materialize
    from v1sweep.data import load_dataset
    from v1sweep.errors import ConfigError

    names = list(CORRUPTIONS) if not args.corruptions else [c.strip() for c in args.corruptions.split(",") if c.strip()]
    unknown = [c for c in names if c not in CORRUPTIONS]
    if unknown:
        raise ConfigError(f"unknown corruption(s) {', '.join(unknown)}; valid: {', '.join(CORRUPTIONS)}",
                          key="--corruptions")
    bad = [s for s in args.severities if s not in range(1, 6)]
    if bad or not args.severities:
        raise ConfigError(f"severities must be integers in 1-5, got {args.severities}", key="--severities")
    if args.max_images is not None and args.max_images < 1:
        raise ConfigError(f"{args.max_images} is out of range; allowed: >= 1", key="--max-images")
    if args.preview_index < 0:
        raise ConfigError(f"{args.preview_index} is out of range; allowed: >= 0", key="--preview-index")
    size = args.image_size or _NATIVE_SIZE.get(args.dataset, 32)
    data = DataConfig(dataset=args.dataset, path=args.data_path, image_size=size, train_size=1,
                      test_size=args.max_images, seed=0, augment=False)
    data.validate()
    t0 = time.perf_counter()
    dataset = load_dataset(data)
    images, labels = dataset.test_images, dataset.test_labels
    if args.max_images is not None:
        images, labels = images[:args.max_images], labels[:args.max_images]
    print(f"{dataset.name or args.dataset}: {images.shape[0]} test images of {size} px "
          f"(loaded in {time.perf_counter() - t0:.1f} s)", flush=True)
    out = Path(args.out)
    t1 = time.perf_counter()
    folder = materialize(images, labels, names, args.severities, args.seed, out, exact_dir=True,
                         device=args.device, log=lambda msg: print(msg, flush=True),
                         frost=args.frost, storage=args.storage)
    n_pairs = len(names) * len(set(args.severities))
    print(f"{n_pairs} corruption/severity pairs in {folder} ({time.perf_counter() - t1:.1f} s)")
    preview = folder / "preview.png"
    preview_grid(folder, names, sorted(set(args.severities)), images, args.preview_index, preview)
    print(f"preview: {preview}")
    return 0
