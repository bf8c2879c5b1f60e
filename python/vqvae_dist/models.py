"""build_model(cfg, image_shape): the PyTorch module of a resolved config, one per architecture.

    model.type vqvae, model.arch resnet     -> resnet.ResNetVQVAE      (the PyTorch VQ-VAE notebook)
    model.type vqvae, model.arch small      -> small.SmallVQVAE        (the classic MNIST VQ-VAE)
    model.type vae,   model.arch small      -> small.SmallVAE          (the Gaussian VAE)
    model.type vqvae, model.arch groupnorm  -> groupnorm.GroupNormVQModel (diffusers' VQModel layout)
"""
from . import config as C
from .groupnorm import GroupNormVQModel
from .resnet import ResNetVQVAE
from .small import SmallVAE, SmallVQVAE


def _quantizer_kwargs(cfg):
    return dict(num_embeddings=C.get_int(cfg, 'quantizer.num_embeddings'),
                commitment_cost=C.get_float(cfg, 'quantizer.commitment_cost'),
                quantizer=C.get_choice(cfg, 'quantizer.type', ('ema', 'vq')),
                decay=C.get_float(cfg, 'quantizer.decay'),
                epsilon=C.get_float(cfg, 'quantizer.epsilon'),
                init=str(C.get(cfg, 'quantizer.init')))


def _resnet(cfg, channels):
    return ResNetVQVAE(in_channels=channels, num_hiddens=C.get_int(cfg, 'model.num_hiddens'),
                       num_residual_hiddens=C.get_int(cfg, 'model.num_residual_hiddens'),
                       num_residual_layers=C.get_int(cfg, 'model.num_residual_layers'),
                       embedding_dim=C.get_int(cfg, 'model.embedding_dim'), **_quantizer_kwargs(cfg))


def _small(cfg, channels):
    widths = C.get_int_list(cfg, 'model.channels')
    model = SmallVQVAE(in_channels=channels, channels=widths, embedding_dim=C.get_int(cfg, 'model.embedding_dim'),
                       **_quantizer_kwargs(cfg))
    return model   # groups derived: latent channels / model.embedding_dim, as the C program


def _vae(cfg, channels):
    if C.arch(cfg) != 'small':
        raise C.ConfigError(f"model.type vae is built on model.arch small, not {C.arch(cfg)!r}")
    return SmallVAE(in_channels=channels, channels=C.get_int_list(cfg, 'model.channels'),
                    latent_dim=C.get_int(cfg, 'vae.latent_dim'), kl_weight=C.get_float(cfg, 'vae.kl_weight'),
                    recon_weight=C.get_float(cfg, 'vae.recon_weight'))


def _groupnorm(cfg, channels):
    return GroupNormVQModel(in_channels=channels, block_out_channels=C.get_int_list(cfg, 'model.block_out_channels'),
                            layers_per_block=C.get_int(cfg, 'model.layers_per_block'),
                            norm_num_groups=C.get_int(cfg, 'model.norm_num_groups'),
                            norm_eps=C.get_float(cfg, 'model.norm_eps'), dropout=C.get_float(cfg, 'model.dropout'),
                            latent_channels=C.get_int(cfg, 'model.latent_channels'),
                            embedding_dim=C.get_int(cfg, 'model.embedding_dim'),
                            mid_attention=C.get_bool(cfg, 'model.mid_attention'), **_quantizer_kwargs(cfg))


BUILDERS = {'resnet': _resnet, 'small': _small, 'groupnorm': _groupnorm}


def build_model(cfg, image_shape):
    """The untrained module for a config (nested dict, see config.py) and images (C, H, W). Its
    `recon_mode` is derived from model.arch and model.type (config.recon_mode)."""
    channels = int(image_shape[0])
    try:
        model = _vae(cfg, channels) if C.model_type(cfg) == 'vae' else BUILDERS[C.arch(cfg)](cfg, channels)
    except ValueError as e:  # a shape rule of the module: say it is the config's
        raise C.ConfigError(f'cannot build the model from this config: {e}') from None
    model.recon_mode = C.recon_mode(cfg)
    return model
