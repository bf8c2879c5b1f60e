"""The C program's dropout masks in NumPy, for the torch parity test: Philox4x32-10 and the
counter layout of src/core/philox.h (key = seed, counter = {block, global sample, step,
(PHILOX_PURPOSE_DROPOUT << 24) | layer}; element e of a sample uses word e % 4 of block e / 4 and
is kept when (word >> 8) / 2^24 >= p), and a module that applies such a mask in place of
nn.Dropout, so that PyTorch runs a groupnorm model with the very masks the C step drew."""
import numpy as np
import torch
import torch.nn as nn

PURPOSE_DROPOUT = 0x40
M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter, key):
    """counter: 4 uint64 arrays (values < 2^32), key: 2 ints -> 4 uint64 arrays of 32-bit words."""
    c0, c1, c2, c3 = (np.asarray(c, np.uint64) for c in counter)
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for _ in range(10):
        p0, p1 = np.uint64(M0) * c0, np.uint64(M1) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & MASK32, (p0 >> np.uint64(32)) ^ c3 ^ k1,
                          p0 & MASK32)
        k0, k1 = (k0 + np.uint64(W0)) & MASK32, (k1 + np.uint64(W1)) & MASK32
    return c0, c1, c2, c3


def keep_mask(seed, layer, step, first_sample, n, per_sample, p):
    """[n, per_sample] bool: the elements dropout_forward keeps."""
    sample = np.arange(first_sample, first_sample + n, dtype=np.uint64)[:, None]
    element = np.arange(per_sample, dtype=np.uint64)[None, :]
    block = element // np.uint64(4)
    shape = (n, per_sample)
    counter = (np.broadcast_to(block, shape), np.broadcast_to(sample, shape), np.full(shape, step, np.uint64),
               np.full(shape, (PURPOSE_DROPOUT << 24) | layer, np.uint64))
    words = np.stack(philox4x32_10(counter, (seed & 0xFFFFFFFF, seed >> 32)))
    word = np.take_along_axis(words, np.broadcast_to(element % np.uint64(4), shape)[None].astype(np.int64), 0)[0]
    uniform = (word >> np.uint64(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    return uniform >= np.float32(p)


class FixedDropout(nn.Module):
    """x * keep * (float)(1 / (1 - p)), the mask drawn once for inputs of one shape."""

    def __init__(self, seed, layer, step, p):
        super().__init__()
        self.seed, self.layer, self.step, self.p = seed, layer, step, p

    def forward(self, x):
        n = x.shape[0]
        keep = keep_mask(self.seed, self.layer, self.step, 0, n, x[0].numel(), self.p)
        scale = np.float32(1.0 / (1.0 - self.p))
        return x * torch.from_numpy(keep.reshape(x.shape).astype(np.float32) * scale)


def install_groupnorm_masks(model, seed, step, p):
    """Replace every ResnetBlock2D's dropout by the C program's mask. The C builder numbers the
    dropout layers in build order: the encoder's resnets (down blocks, then the mid block), then the
    decoder's mid block before its up blocks (PyTorch registers the decoder's up_blocks first)."""
    resnets = [(name, m) for name, m in model.named_modules() if hasattr(m, 'norm1') and hasattr(m, 'dropout')]
    def order(item):
        name = item[0]
        return (name.startswith('decoder.'), name.startswith('decoder.') and '.up_blocks.' in name)
    for layer, (_, block) in enumerate(sorted(resnets, key=order)):   # sorted is stable
        block.dropout = FixedDropout(seed, layer, step, p)
    return len(resnets)
