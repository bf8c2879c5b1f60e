"""The resolved config a checkpoint stores (root attribute `config`, YAML), read with PyYAML.

A config is the nested dict PyYAML gives: cfg['model']['arch']. `get(cfg, 'model.arch')` reads a
key with vqvae_dist's default when the file predates the key (a checkpoint of an older release),
so every model builder sees one set of values. Keys and defaults follow docs/CONFIG.md.
"""
import yaml

# Defaults of the keys the Python side reads (src/io/config.c is the authority; these matter only
# for configs that leave a key out, e.g. one written before the key existed).
DEFAULTS = {
    'model.type': 'vqvae',
    'model.arch': 'resnet',
    'model.num_hiddens': 128,
    'model.num_residual_hiddens': 32,
    'model.num_residual_layers': 2,
    'model.embedding_dim': 64,
    'model.channels': [16, 32, 64],
    'model.block_out_channels': [64, 128],
    'model.layers_per_block': 1,
    'model.norm_num_groups': 32,
    'model.norm_eps': 1e-6,
    'model.dropout': 0.0,
    'model.latent_channels': 0,
    'model.mid_attention': True,
    'quantizer.type': 'ema',
    'quantizer.num_embeddings': 512,
    'quantizer.commitment_cost': 0.25,
    'quantizer.decay': 0.99,
    'quantizer.epsilon': 1e-5,
    'quantizer.init': 'auto',
    'vae.latent_dim': 16,
    'vae.kl_weight': 1.0,
    'vae.recon_weight': 1.0,
    'data.dataset': 'fashion_mnist',
    'data.path': '/usr/share/datasets/fashion-mnist',
    'data.channels': 3,
    'data.image_size': 32,
    # auto: per architecture, as the C program resolves it (see data_range())
    'data.range': 'auto',
}

# Reconstruction losses: recon_mode(cfg) -> what it computes (models.recon_loss); derived from
# model.arch and model.type exactly as the C program (src/train/model_spec.c), not a config key.
RECON_MODES = {
    'nmse': 'mean squared error / training-set variance (resnet default)',
    'mse': 'mean squared error (small VQ-VAE and groupnorm default)',
    'sse': 'sum of squared errors over the batch (VAE default)',
}
DATA_RANGES = {'centered': (-0.5, 0.5), 'unit': (0.0, 1.0), 'symmetric': (-1.0, 1.0)}
ARCHS = ('resnet', 'small', 'groupnorm')
MODEL_TYPES = ('vqvae', 'vae')

# Image shape (channels, height, width) of the real datasets.
DATASET_SHAPES = {'fashion_mnist': (1, 28, 28), 'mnist': (1, 28, 28), 'cifar10': (3, 32, 32)}


class ConfigError(ValueError):
    """A config value vqvae_dist's Python side cannot build a model from."""


def parse(text, source='config'):
    """The nested dict of a YAML config text."""
    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f'{source}: not valid YAML: {e}') from None
    if not isinstance(cfg, dict) or not all(isinstance(v, dict) or v is None for v in cfg.values()):
        raise ConfigError(f'{source}: expected sections of key: value lines (model:, quantizer:, ...)')
    return {section: dict(entries or {}) for section, entries in cfg.items()}


def flatten(cfg):
    """{'section.key': value} of a nested config (the command line's override syntax)."""
    return {f'{section}.{key}': value for section, entries in cfg.items() for key, value in entries.items()}


def get(cfg, key, default=KeyError):
    """cfg['section']['key'], else `default`, else DEFAULTS[key]."""
    section, _, name = key.partition('.')
    entries = cfg.get(section) or {}
    if name in entries:
        return entries[name]
    if default is not KeyError:
        return default
    if key in DEFAULTS:
        return DEFAULTS[key]
    raise ConfigError(f"config has no key '{key}' and it has no default")


def get_int(cfg, key):
    value = get(cfg, key)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}' must be an integer, got {value!r}") from None


def get_float(cfg, key):
    value = get(cfg, key)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}' must be a number, got {value!r}") from None


def get_bool(cfg, key):
    value = get(cfg, key)
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ('true', 'yes', 'on', '1'):
        return True
    if text in ('false', 'no', 'off', '0'):
        return False
    raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")


def get_int_list(cfg, key):
    value = get(cfg, key)
    if isinstance(value, str):  # "16,32,64" or "[16, 32, 64]"
        value = [v for v in value.strip('[]').replace(',', ' ').split()]
    try:
        values = [int(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}' must be a list of integers, got {value!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"config key '{key}' must list positive integers, got {value!r}")
    return values


def get_choice(cfg, key, choices):
    value = str(get(cfg, key))
    if value not in choices:
        raise ConfigError(f"config key '{key}' is {value!r}; this version of the Python package knows "
                          f"{', '.join(choices)}")
    return value


def model_type(cfg):
    return get_choice(cfg, 'model.type', MODEL_TYPES)


def arch(cfg):
    return get_choice(cfg, 'model.arch', ARCHS)


def data_range(cfg):
    """data.range with auto resolved as the C program does (src/io/dataset.c, dataset_range_of):
    centered ([-0.5, 0.5]) for resnet, unit ([0, 1]) for small, symmetric ([-1, 1]) for groupnorm."""
    value = get(cfg, 'data.range')
    if value is None or value == 'auto':
        return {'small': 'unit', 'groupnorm': 'symmetric'}.get(arch(cfg), 'centered')
    return get_choice(cfg, 'data.range', tuple(DATA_RANGES))


def recon_mode(cfg):
    """The reconstruction term, as model_spec.c builds it: sse (summed over the batch) for a VAE,
    nmse (MSE / training variance) for resnet, plain mse for small and groupnorm."""
    if model_type(cfg) == 'vae':
        return 'sse'
    return 'nmse' if arch(cfg) == 'resnet' else 'mse'


def image_shape(cfg, attrs=None):
    """(channels, height, width): the checkpoint's image_* root attributes when it has them, else
    from data.dataset (synthetic: data.channels x data.image_size^2)."""
    attrs = attrs or {}
    names = ('image_channels', 'image_height', 'image_width')
    if all(n in attrs for n in names):
        return tuple(int(attrs[n]) for n in names)
    dataset = str(get(cfg, 'data.dataset'))
    if dataset in DATASET_SHAPES:
        return DATASET_SHAPES[dataset]
    if dataset == 'synthetic':
        size = get_int(cfg, 'data.image_size')
        return (get_int(cfg, 'data.channels'), size, size)
    raise ConfigError(f"data.dataset is {dataset!r}: the image shape is unknown (and the checkpoint has no "
                      "image_channels/image_height/image_width attributes)")
