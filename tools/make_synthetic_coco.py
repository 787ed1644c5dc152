"""Write the synthetic COCO dataset of deformed shapes.

Example (from the repository root)::

    python tools/make_synthetic_coco.py --out-dir data/synthetic_coco \\
        --num-train 300 --num-val 60 --deformation strong

See ``mmdcn_plugin/synthetic/coco.py`` for what is generated (``shapes.py``, ``scene.py``
and ``annotation.py`` beside it for how).
"""
import argparse
import importlib.util
import os.path as osp
import sys
import time

_PACKAGE_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                        'mmdcn_plugin', 'synthetic')


def _load_generator():
    """Return the generator module (``mmdcn_plugin/synthetic/coco.py``).

    Importing ``mmdcn_plugin.synthetic`` would first run ``mmdcn_plugin/__init__.py``,
    which pulls in torch and mmdet.  The generator's folder itself needs only numpy and
    OpenCV, so it is loaded directly, as a package of its own under a private name (its
    files import each other relatively); this also works when the package is not
    installed.  The installed package is the fallback for a copy of this script living
    elsewhere.
    """
    init = osp.join(_PACKAGE_DIR, '__init__.py')
    if osp.isfile(init):
        name = '_mmdcn_synthetic'
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(
                name, init, submodule_search_locations=[_PACKAGE_DIR])
            package = importlib.util.module_from_spec(spec)
            sys.modules[name] = package  # the relative imports look it up there
            spec.loader.exec_module(package)
        return sys.modules[name + '.coco']
    from mmdcn_plugin.synthetic import coco
    return coco


def parse_args(argv, levels):
    parser = argparse.ArgumentParser(
        description='Generate a COCO-format dataset of shapes under geometric '
        'deformation (train and val splits).')
    parser.add_argument('--out-dir', required=True,
                        help='root folder for annotations/ and images/')
    parser.add_argument('--num-train', type=int, default=300,
                        help='number of training images (default: 300)')
    parser.add_argument('--num-val', type=int, default=60,
                        help='number of validation images (default: 60)')
    parser.add_argument('--seed', type=int, default=0,
                        help='non-negative seed; same arguments give identical '
                        'files (default: 0)')
    parser.add_argument('--deformation', choices=levels, default='moderate',
                        help='strength of rotation/scale/shear/perspective/elastic '
                        'warp (default: moderate)')
    parser.add_argument('--image-size', type=int, default=128,
                        help='side of the square images in pixels (default: 128)')
    parser.add_argument('--no-progress', action='store_true',
                        help='do not show progress on stderr')
    return parser, parser.parse_args(argv)


def main(argv=None):
    generator = _load_generator()
    parser, args = parse_args(argv, generator.DEFORMATION_LEVELS)
    start = time.perf_counter()
    try:
        result = generator.generate_synthetic_coco(
            args.out_dir, num_train=args.num_train, num_val=args.num_val,
            seed=args.seed, deformation=args.deformation,
            image_size=args.image_size, progress=not args.no_progress)
    except ValueError as err:
        parser.error(str(err))  # exits with status 2 and the usage line
    elapsed = time.perf_counter() - start

    print(f'Synthetic COCO dataset written to {result["out_dir"]} in {elapsed:.1f}s '
          f'(seed={args.seed}, deformation={args.deformation}, '
          f'image_size={args.image_size})')
    for split in ('train', 'val'):
        info = result[split]
        print(f'  {split:5s}: {info["num_images"]} images, '
              f'{info["num_instances"]} instances')
        print(f'         annotations: {info["ann_file"]}')
        print(f'         images:      {info["img_dir"]}')
    print(f'  classes: {", ".join(result["classes"])}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
