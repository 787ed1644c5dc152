"""`make demo`: the main job.

Until the detector tooling lands this is a smoke run: a ResNet-50 (narrow) with
DeformableConv2d (DCNv2) in c3-c5 takes a few SGD steps on random images, and each
step's loss and time are printed, together with the backends this machine has.
"""
import argparse
import time

import torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--size', type=int, default=128, help='image side in pixels')
    args = parser.parse_args(argv)

    import mmdcn_plugin
    from mmengine.registry import init_default_scope
    from mmdet.models.backbones import ResNet

    init_default_scope('mmdet')
    print(f'mmdcn_plugin {mmdcn_plugin.__version__}; backends on this machine: '
          f'{mmdcn_plugin.available_backends()}', flush=True)
    torch.manual_seed(0)
    net = ResNet(depth=50, base_channels=16, out_indices=(3,),
                 dcn=dict(type='DeformableConv2d', deform_groups=1, fallback_on_stride=False),
                 stage_with_dcn=(False, True, True, True))
    net.init_weights()
    head = torch.nn.Linear(net.feat_dim, 1)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    n_dcn = sum(isinstance(m, mmdcn_plugin.DeformableConv2d) for m in net.modules())
    print(f'ResNet-50 (base_channels=16) with {n_dcn} DeformableConv2d layers in c3-c5',
          flush=True)
    for step in range(1, args.steps + 1):
        x = torch.randn(2, 3, args.size, args.size)
        target = x.mean(dim=(1, 2, 3)).unsqueeze(1)
        start = time.perf_counter()
        loss = ((head(net(x)[0].mean(dim=(2, 3))) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f'step {step}/{args.steps}  loss {loss.item():.4f}  '
              f'{time.perf_counter() - start:.2f}s', flush=True)
    print('demo finished', flush=True)


if __name__ == '__main__':
    main()
