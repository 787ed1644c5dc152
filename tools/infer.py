"""Detect objects in an image or a folder of images with MMDetection's ``DetInferencer``.

The plugin is imported first (as by ``tools/train.py``), so every config here works,
with a checkpoint or without one (random weights; mmdet warns)::

    python tools/infer.py configs/quickstart/faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py \\
        data/synthetic/images/val --checkpoint work_dirs/NAME/epoch_8.pth --out-dir outputs

Writes ``OUT_DIR/vis/NAME.jpg`` (detections scoring >= ``--score-thr`` drawn),
``OUT_DIR/preds/NAME.json`` (every prediction) and ``OUT_DIR/predictions.json`` (the
detections >= ``--score-thr`` of every image, with class names); see
``mmdcn_plugin/apis/inference.py``.
"""
import argparse
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run a detector config (+ checkpoint) on an image or a folder of images.')
    parser.add_argument('config', help='config file')
    parser.add_argument('inputs', metavar='IMAGE_OR_DIR', help='an image file or a folder of '
                        'images')
    parser.add_argument('--checkpoint', default=None,
                        help='weights to load (default: none, random weights)')
    parser.add_argument('--out-dir', default='outputs',
                        help='where vis/, preds/ and predictions.json go (default: outputs)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='lowest score drawn and listed in predictions.json '
                        '(default: 0.3)')
    parser.add_argument('--device', default=None,
                        help="e.g. 'cpu' or 'cuda:0' (default: CUDA when available)")
    return parser, parser.parse_args(argv)


def main(argv=None):
    parser, args = parse_args(argv)
    from mmdcn_plugin.apis.inference import run_inference
    try:
        summary = run_inference(args.config, args.inputs, checkpoint=args.checkpoint,
                                out_dir=args.out_dir, score_thr=args.score_thr,
                                device=args.device)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))  # exits with status 2 and the usage line
    found = sum(len(image['detections']) for image in summary['images'])
    print(f'{len(summary["images"])} image(s), {found} detection(s) scoring >= '
          f'{args.score_thr}; results in {args.out_dir}/ (vis/, preds/, predictions.json)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
