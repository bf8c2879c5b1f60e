#!/usr/bin/python3
"""The PyTorch speed baseline for `vqvae_dist bench`: the reference module of a config's model.arch
(python/vqvae_dist/models.py: resnet.py, small.py, groupnorm.py) with the model and optimizer of a config of ours (default configs/cifar.yaml; section.key=value overrides as
for vqvae_dist), trained on synthetic data of the same kind as our data.dataset=synthetic, resident on the
device. Times --steps training steps (forward, backward, Adam, EMA update) after --warmup steps and prints one
JSON line with the fields of `vqvae_dist bench` (docs/BENCHMARKS.md).

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/pytorch_vqvae.py --batch 32 --steps 20 --warmup 3 --threads 2
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/pytorch_vqvae.py --ranks 2 --threads 1 --batch 32   # DDP, gloo
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/pytorch_vqvae.py --config configs/mnist_small.yaml \
        data.dataset=synthetic --threads 2                                  # the small MNIST VQ-VAE
    python3 bench/pytorch_vqvae.py --device cuda --precision tf32 --compile --batch 256 --steps 200

Threads on the CPU: --threads is torch.set_num_threads (ATen's OpenMP pool, which runs the oneDNN convolutions);
the system BLAS (Debian: OpenBLAS, used for the quantizer's matmul and some convolutions) has its own pool, sized
by OPENBLAS_NUM_THREADS before the process starts. The JSON records both. --ranks N runs N processes on this host
as torch.nn.parallel.DistributedDataParallel over gloo (CPU) with --batch images each, as a user would; rank 0
prints the JSON line (images/s of the global batch, the largest peak memory of any rank).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.distributed as dist

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, os.path.join(ROOT, 'python'))
import yaml  # noqa: E402

import vqvae_dist  # noqa: E402
from vqvae_dist import config as C  # noqa: E402
from vqvae_dist import models as M  # noqa: E402
from vqvae_dist.base import recon_loss  # noqa: E402

# The keys this baseline uses, with our defaults (src/io/config.c; data.dataset as `vqvae_dist bench` starts);
# a config file and overrides change them.
DEFAULTS = {
    'model.num_hiddens': 128, 'model.num_residual_hiddens': 32, 'model.num_residual_layers': 2,
    'model.embedding_dim': 64, 'quantizer.type': 'ema', 'quantizer.num_embeddings': 512,
    'quantizer.commitment_cost': 0.25, 'quantizer.decay': 0.99, 'quantizer.epsilon': 1e-5, 'quantizer.init': 'auto',
    'data.dataset': 'synthetic', 'data.synthetic_count': 2048, 'data.channels': 3, 'data.image_size': 32,
    'train.batch_size': 32, 'train.lr': 1e-3, 'train.beta1': 0.9, 'train.beta2': 0.999, 'train.eps': 1e-8,
    'train.weight_decay': 0.0, 'train.seed': 1234,
}

# channels and size of the real datasets (src/train/bench.c benches on synthetic images of this shape)
DATASET_SHAPES = {'cifar10': (3, 32), 'mnist': (1, 28), 'fashion_mnist': (1, 28)}


def process_age_s():
    """Seconds since the kernel started this process (/proc/self/stat starttime), or None."""
    try:
        with open('/proc/self/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of the line; fields[0] is field 3
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf('SC_CLK_TCK')
    except (OSError, IndexError, ValueError, AttributeError):
        return None


PROCESS_AGE_AT_IMPORT = process_age_s()
IMPORT_CLOCK = time.perf_counter()


def resolve_config(path, overrides):
    """DEFAULTS, then the keys of the YAML file that DEFAULTS lists, then section.key=value overrides; under
    'nested' the whole config (every key, as vqvae_dist.models.build_model reads it)."""
    cfg = dict(DEFAULTS)
    items = []
    if path:
        with open(path) as f:
            items = list(C.flatten(C.parse(f.read(), path)).items())
    for text in overrides:
        key, sep, value = text.partition('=')
        if not sep or '.' not in key:
            sys.exit(f'pytorch_vqvae.py: expected section.key=value, got {text!r}')
        items.append((key, yaml.safe_load(value)))   # a value reads as in a YAML file
    nested = {}
    for key, value in items:
        section, _, name = key.partition('.')
        nested.setdefault(section, {})[name] = value
        if key not in cfg:
            continue  # model.arch, data.path, ...: read through 'nested' (or not at all)
        kind = type(DEFAULTS[key])
        try:
            cfg[key] = kind(value) if kind is not str else str(value)
        except (TypeError, ValueError):
            sys.exit(f'pytorch_vqvae.py: {key} expects {kind.__name__}, got {value!r}')
    # As `vqvae_dist bench`: look-alike images of the named dataset's shape (synthetic: data.channels and
    # data.image_size).
    shape = DATASET_SHAPES.get(cfg['data.dataset'])
    if shape:
        cfg['data.channels'], cfg['data.image_size'] = shape
    for key in ('data.channels', 'data.image_size', 'data.dataset'):
        section, _, name = key.partition('.')
        nested.setdefault(section, {})[name] = cfg[key]
    cfg['nested'] = nested
    return cfg


def synthetic_images(count, channels, size, generator):
    """Images like our data.dataset=synthetic (src/io/dataset.c synthetic_image), drawn from torch's RNG: a
    per-channel base colour with a linear gradient plus 2-4 Gaussian blobs, clamped, stored as uint8, read back
    as uint8 / 255 - 0.5. Same distribution as ours, not the same pixels."""
    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=generator)

    coord = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    base = uniform(0.2, 0.8, count, channels, 1, 1)
    grad_x = uniform(-0.4, 0.4, count, channels, 1, 1)
    grad_y = uniform(-0.4, 0.4, count, channels, 1, 1)
    v = base + grad_x * coord.view(1, 1, 1, size) + grad_y * coord.view(1, 1, size, 1)
    blobs = torch.randint(2, 5, (count,), generator=generator)
    for b in range(4):
        cx, cy = uniform(-0.35, 0.35, count, 1, 1, 1), uniform(-0.35, 0.35, count, 1, 1, 1)
        sigma = uniform(0.06, 0.22, count, 1, 1, 1)
        colour = uniform(-0.6, 0.6, count, channels, 1, 1) * (blobs > b).float().view(count, 1, 1, 1)
        gx = torch.exp(-0.5 * ((coord.view(1, 1, 1, size) - cx) / sigma) ** 2)
        gy = torch.exp(-0.5 * ((coord.view(1, 1, size, 1) - cy) / sigma) ** 2)
        v = v + colour * gx * gy
    pixels = (v.clamp(0.0, 1.0) * 255.0 + 0.5).floor()
    return pixels / 255.0 - 0.5   # centered; load_images shifts them to the config's data.range


def init_codebook_from_data(model, images, generator):
    """Our default EMA init (quantizer.init auto = data): K distinct encoder outputs of the first batch, sizes 1."""
    vq = model.quantizer
    with torch.no_grad():
        _, z = vq.rows(model.encode(images))
        k = vq.num_embeddings
        if z.shape[0] >= k:
            pick = torch.randperm(z.shape[0], generator=generator)[:k]
        else:
            pick = torch.randint(z.shape[0], (k,), generator=generator)
        vq.weight.copy_(z[pick.to(z.device)])
        vq.ema_sum.copy_(vq.weight)
        vq.cluster_size.fill_(1.0)


def cpu_model_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown CPU'


def current_rss_bytes():
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, IndexError, ValueError):
        return None


def git_commit():
    try:
        out = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or 'unknown'
    except (OSError, subprocess.SubprocessError):
        return 'unknown'


def cuda_versions():
    """The library versions as integers in the format of the C APIs, as `vqvae_dist bench` reports them."""
    out = {}
    if torch.version.cuda:
        major, minor = (int(x) for x in torch.version.cuda.split('.')[:2])
        out['cuda_runtime'] = major * 1000 + minor * 10
    out['cudnn'] = torch.backends.cudnn.version()
    try:
        nccl = torch.cuda.nccl.version()
        if isinstance(nccl, tuple):  # (major, minor, patch) in newer torch
            nccl = nccl[0] * 10000 + nccl[1] * 100 + nccl[2]
        out['nccl'] = nccl
    except (AttributeError, RuntimeError):
        pass
    return out


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=os.path.join(ROOT, 'configs', 'cifar.yaml'),
                        help='our YAML config: model, quantizer and optimizer keys (default configs/cifar.yaml)')
    parser.add_argument('--batch', type=int, default=None, help='batch size per rank (default: train.batch_size)')
    parser.add_argument('--steps', type=int, default=50, help='timed steps')
    parser.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    parser.add_argument('--threads', type=int, default=0, help='torch.set_num_threads per rank (0 = torch default)')
    parser.add_argument('--ranks', type=int, default=1,
                        help='processes on this host, DistributedDataParallel over gloo (CPU) or NCCL (CUDA); '
                             '--batch is per rank')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--precision', choices=('tf32', 'fp32', 'bf16'), default='tf32',
                        help='CUDA convolutions in TF32 (our default) or fp32, the quantizer matmul fp32 either '
                             'way, as ours; bf16: the forward under torch.autocast(bfloat16) on either device, '
                             'as a PyTorch user would write it (autocast also runs the quantizer matmul in bf16, '
                             'ours stays fp32)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the model (torch >= 2.0; otherwise the JSON says "unavailable")')
    parser.add_argument('--init-from', metavar='CKPT',
                        help='start from this checkpoint of ours (e.g. before.h5 of `vqvae_dist debug-step`: the '
                             'initial weights and codebook our trainer starts from) instead of a fresh init')
    parser.add_argument('--images', metavar='H5',
                        help='train on the "images" dataset [N, C, H, W] of this HDF5 file (e.g. batch.h5 of '
                             '`vqvae_dist debug-step train.batch_size=<data.synthetic_count>`: all our synthetic '
                             'images) instead of generating look-alikes')
    parser.add_argument('--loss-log', metavar='FILE',
                        help='write {"step": N, "loss": L} per step to FILE, as our metrics.jsonl (for loss '
                             'comparisons: it synchronizes every step, so do not time with it)')
    parser.add_argument('overrides', nargs='*', metavar='section.key=value')
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or (args.batch is not None and args.batch < 1) or args.ranks < 1:
        parser.error('--steps, --batch and --ranks must be >= 1, --warmup >= 0')
    if args.ranks > 1 and (args.loss_log or args.images or args.init_from):
        parser.error('--loss-log, --images and --init-from are for one process (the loss check); drop --ranks')
    return args


def load_images(args, cfg, batch, device, generator):
    """(pool, data_variance): our images from --images, or look-alike synthetic ones."""
    if args.images:
        import h5py
        with h5py.File(args.images, 'r') as h5:
            pool = torch.from_numpy(h5['images'][:]).to(device)
            # our variance (in double over the uint8 histogram) when the file carries it
            data_variance = float(h5.attrs.get('data_variance', pool.var(unbiased=False)))
        if pool.shape[0] < batch:
            sys.exit(f'pytorch_vqvae.py: {args.images} holds {pool.shape[0]} images, fewer than one batch of {batch}')
        return pool, data_variance
    count = max(cfg['data.synthetic_count'], batch)
    pool = synthetic_images(count, cfg['data.channels'], cfg['data.image_size'], generator)
    lo, hi = C.DATA_RANGES[C.data_range(cfg['nested'])]   # auto: unit [0, 1] for small, as ours
    pool = ((pool + 0.5) * (hi - lo) + lo).to(device)
    return pool, float(pool.var(unbiased=False))


def build_model(args, cfg, device):
    if args.init_from:
        return vqvae_dist.load(args.init_from)[0].to(device).train()
    shape = (cfg['data.channels'], cfg['data.image_size'], cfg['data.image_size'])
    try:
        model = M.build_model(cfg['nested'], shape)
    except C.ConfigError as e:
        sys.exit(f'pytorch_vqvae.py: {e}')
    return model.to(device).train()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def main():
    args = parse_args()
    if args.ranks == 1:
        worker(0, args, None)
        return
    # gloo picks its network interface from the host name, which need not resolve here
    os.environ.setdefault('GLOO_SOCKET_IFNAME', 'lo')
    import torch.multiprocessing as mp
    mp.spawn(worker, args=(args, free_port()), nprocs=args.ranks)


def worker(rank, args, port):
    """One rank's run; rank 0 prints the JSON line."""
    cfg = resolve_config(args.config, args.overrides)
    batch = args.batch or cfg['train.batch_size']
    world = args.ranks
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit(f'pytorch_vqvae.py: --device cuda, but torch {torch.__version__} sees no GPU '
                 f'(CUDA build: {torch.version.cuda}); use --device cpu or run on a GPU node')
    cuda = args.device == 'cuda'
    device = torch.device('cuda', rank) if cuda and world > 1 else torch.device(args.device)
    if world > 1:
        dist.init_process_group('nccl' if cuda else 'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                                world_size=world)
    result = {
        'impl': 'pytorch', 'version': torch.__version__, 'commit': git_commit(),
        'device': torch.cuda.get_device_name(device) if cuda else cpu_model_name(), 'backend': args.device,
        'precision': args.precision if cuda or args.precision == 'bf16' else 'fp32', 'compile': bool(args.compile),
        'quantizer': cfg['quantizer.type'], 'world': world, 'batch': batch, 'global_batch': batch * world,
        'threads': torch.get_num_threads() if not cuda else 0,
        'blas_threads': int(os.environ['OPENBLAS_NUM_THREADS']) if os.environ.get('OPENBLAS_NUM_THREADS') else None,
        'steps': args.steps, 'warmup': args.warmup,
    }
    if cuda:
        result.update(cuda_versions())
    if args.compile and not hasattr(torch, 'compile'):
        # No numbers rather than eager numbers under a compile label.
        result.update({'compile': 'unavailable', 'images_per_s': None, 'ms_per_step': None, 'startup_s': None,
                       'final_loss': None, 'peak_memory_bytes': None, 'peak_allocated_bytes': None,
                       'memory_in_use_bytes': None,
                       'note': f'torch.compile needs torch >= 2.0; this is torch {torch.__version__}'})
        if rank == 0:
            print(json.dumps(result))
        return
    result.update(train_and_time(args, cfg, batch, rank, world, device))
    if rank == 0:
        print(json.dumps(result), flush=True)
    if world > 1:
        dist.destroy_process_group()


def train_and_time(args, cfg, batch, rank, world, device):
    """The timed steps: the JSON fields that are measured."""
    cuda = device.type == 'cuda'
    in_use_baseline = 0
    if cuda:
        torch.backends.cudnn.allow_tf32 = args.precision == 'tf32'
        torch.backends.cuda.matmul.allow_tf32 = False  # our quantizer GEMM is fp32 in every precision
        torch.backends.cudnn.benchmark = True           # algorithms chosen once, as our conv_prepare
        free, total = torch.cuda.mem_get_info(device)   # creates the context: the baseline excludes it
        in_use_baseline = total - free

    seed = cfg['train.seed']
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)   # the same on every rank: the same permutations
    pool, data_variance = load_images(args, cfg, batch * world, device, generator)
    count = pool.shape[0]
    model = build_model(args, cfg, device)

    # Our sampler: a fresh permutation each epoch, whole global batches only; rank r takes the r-th
    # slice of each global batch.
    global_batch = batch * world
    batches_per_epoch = count // global_batch
    order = []

    def next_batch(i):
        if i % batches_per_epoch == 0:
            order[:] = [torch.randperm(count, generator=generator).to(device)]
        j = i % batches_per_epoch
        return pool[order[0][j * global_batch + rank * batch:j * global_batch + (rank + 1) * batch]]

    first = next_batch(0)
    vae = getattr(model, 'is_vae', False)
    if not vae and cfg['quantizer.type'] == 'ema' and cfg['quantizer.init'] in ('auto', 'data') and not args.init_from:
        init_codebook_from_data(model, first, generator)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg['train.lr'],
                                 betas=(cfg['train.beta1'], cfg['train.beta2']), eps=cfg['train.eps'],
                                 weight_decay=cfg['train.weight_decay'])
    # DDP broadcasts rank 0's parameters and buffers (the codebook) at construction, and its buffers (the
    # EMA state) before every forward: the notebook's EMA update stays local, rank 0's wins.
    forward = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    forward = torch.compile(forward) if args.compile else forward

    bf16 = args.precision == 'bf16'

    def step(images):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = forward(images)
        # The losses in fp32, as autocast's docs advise (a no-op without autocast).
        outputs = [o.float() if torch.is_tensor(o) and o.is_floating_point() else o for o in outputs]
        if vae:   # ours: the squared error summed over the global batch (DDP averages: x world) + w KLD
            x_recon, mean, logvar = outputs
            kld = -0.5 * torch.mean(1 + logvar - mean.pow(2) - logvar.exp())
            loss = model.recon_weight * world * ((x_recon - images) ** 2).sum() + model.kl_weight * kld
        else:
            vq_loss, x_recon, _, _ = outputs
            loss = recon_loss(x_recon, images, model.recon_mode, data_variance) + vq_loss
        loss.backward()
        optimizer.step()
        return loss.detach()

    def sync():
        if cuda:
            torch.cuda.synchronize(device)
        if world > 1:
            dist.barrier()

    loss_log = open(args.loss_log, 'w') if args.loss_log else None
    start = None
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync()
            start = time.perf_counter()
        loss = step(first if i == 0 else next_batch(i))
        if loss_log:
            loss_log.write(json.dumps({'step': i + 1, 'loss': float(loss)}) + '\n')
        if i == 0:
            sync()
            first_step_end = time.perf_counter()
    sync()
    elapsed = time.perf_counter() - start
    if loss_log:
        loss_log.close()

    if cuda:
        free, total = torch.cuda.mem_get_info(device)
        in_use = max(total - free - in_use_baseline, 0)
        peak, peak_allocated = torch.cuda.max_memory_reserved(device), torch.cuda.max_memory_allocated(device)
    else:
        in_use = current_rss_bytes()
        peak, peak_allocated = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, None  # KiB on Linux
    final_loss = float(loss)
    if world > 1:   # the loss averaged over ranks, memory the largest of any rank (as ours)
        t = torch.tensor([final_loss / world], dtype=torch.float64)
        dist.all_reduce(t)
        final_loss = float(t)
        m = torch.tensor([float(peak), float(in_use or 0)], dtype=torch.float64)
        dist.all_reduce(m, op=dist.ReduceOp.MAX)
        peak, in_use = int(m[0]), int(m[1])
    age = PROCESS_AGE_AT_IMPORT if PROCESS_AGE_AT_IMPORT is not None else 0.0
    return {
        'images_per_s': round(args.steps * global_batch / elapsed, 2),
        'ms_per_step': round(1000 * elapsed / args.steps, 3),
        'startup_s': round(age + first_step_end - IMPORT_CLOCK, 3),
        'final_loss': round(final_loss, 6) if final_loss == final_loss and abs(final_loss) != float('inf') else None,
        'peak_memory_bytes': int(peak), 'peak_allocated_bytes': peak_allocated,
        'memory_in_use_bytes': in_use,
    }


if __name__ == '__main__':
    main()
