#!/usr/bin/python3
"""The PyTorch speed baseline: the reference VQ-VAE (tests/reference/vqvae_reference.py) trained with
the hyperparameters of configs/cifar.yaml on synthetic CIFAR-shaped data. Times --steps training
steps (forward, backward, Adam, EMA update) after --warmup steps and prints one JSON line.

    /usr/bin/python3 bench/pytorch_vqvae.py --batch 32 --steps 20 --warmup 3 --threads 2
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'reference'))
import vqvae_reference as ref  # noqa: E402

# configs/cifar.yaml
HPARAMS = dict(in_channels=3, num_hiddens=128, num_residual_hiddens=32, num_residual_layers=2, num_embeddings=512,
               embedding_dim=64, commitment_cost=0.25, decay=0.99, epsilon=1e-5)
LR = 1e-3


def smooth_images(n, generator, device):
    """Random smooth images in [-0.5, 0.5]: 8x8 noise upsampled to 32x32."""
    coarse = torch.rand(n, 3, 8, 8, generator=generator)
    images = F.interpolate(coarse, size=(32, 32), mode='bilinear', align_corners=False) - 0.5
    return images.to(device)


def init_codebook_from_data(model, images):
    """The C trainer's default EMA init (quantizer.init auto = data): codes from encoder outputs, sizes 1."""
    vq = model._vq_vae
    with torch.no_grad():
        z = model._pre_vq_conv(model._encoder(images)).permute(0, 2, 3, 1).reshape(-1, vq._embedding_dim)
        pick = torch.randint(z.shape[0], (vq._num_embeddings,), device=z.device)
        vq._embedding.weight.copy_(z[pick])
        vq._ema_w.copy_(vq._embedding.weight)
        vq._ema_cluster_size.fill_(1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--steps', type=int, default=20, help='timed steps')
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps first')
    parser.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0 = torch default)')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--precision', choices=('tf32', 'fp32'), default='tf32',
                        help='CUDA: allow TF32 in convolutions and matmuls (our default) or not')
    parser.add_argument('--compile', action='store_true', help='torch.compile the model (torch >= 2.0)')
    parser.add_argument('--quantizer', choices=('ema', 'vq'), default='ema')
    parser.add_argument('--seed', type=int, default=1234)
    args = parser.parse_args()
    if args.steps < 1 or args.batch < 1 or args.warmup < 0:
        parser.error('--steps and --batch must be >= 1, --warmup >= 0')

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.device == 'cuda':
        if not torch.cuda.is_available():
            sys.exit('pytorch_vqvae.py: --device cuda but this torch has no CUDA (torch %s)' % torch.__version__)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.precision == 'tf32'
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    pool = smooth_images(8 * args.batch, generator, device)  # resident, like our dataset on the GPU
    data_variance = float(pool.var())
    model = ref.Model(quantizer=args.quantizer, **HPARAMS).to(device).train()
    if args.quantizer == 'ema':
        init_codebook_from_data(model, pool[:args.batch])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)

    compiled = False
    forward = model
    if args.compile:
        if hasattr(torch, 'compile'):
            forward, compiled = torch.compile(model), True
        else:
            print(f'pytorch_vqvae.py: torch.compile is not available in torch {torch.__version__} (needs 2.0); '
                  'running eager', file=sys.stderr)

    def step(i):
        images = pool[(i % 8) * args.batch:(i % 8 + 1) * args.batch]
        optimizer.zero_grad(set_to_none=True)
        vq_loss, x_recon, _, _ = forward(images)
        loss = F.mse_loss(x_recon, images) / data_variance + vq_loss
        loss.backward()
        optimizer.step()
        return loss.detach()

    def sync():
        if args.device == 'cuda':
            torch.cuda.synchronize()

    for i in range(args.warmup):
        step(i)
    sync()
    if args.device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(args.steps):
        loss = step(args.warmup + i)
    sync()
    elapsed = time.perf_counter() - start

    if args.device == 'cuda':
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({
        'impl': 'pytorch', 'torch': torch.__version__, 'device': args.device, 'threads': torch.get_num_threads(),
        'batch': args.batch, 'quantizer': args.quantizer, 'compile': compiled,
        'precision': args.precision if args.device == 'cuda' else 'fp32', 'steps': args.steps,
        'images_per_s': round(args.steps * args.batch / elapsed, 2),
        'ms_per_step': round(1000 * elapsed / args.steps, 3),
        'final_loss': round(float(loss), 6), 'peak_mem_bytes': int(peak)}))


if __name__ == '__main__':
    main()
