"""A batched ensemble of ReLU+L1 SAEs: many SAEs, one set of stacked tensors.

Every member has the pre-bias form of :class:`toysae.sae.relu.ReLUSAE`
(``f = ReLU((x - b_dec) W_enc + b_enc)``, ``x_hat = f W_dec + b_dec``); the
ensemble stacks the members' parameters along a leading model axis so that
one ``torch.baddbmm`` per layer computes all of them at once:

    W_enc (n_models, d, max_width)     b_enc (n_models, max_width)
    W_dec (n_models, max_width, d)     b_dec (n_models, d)

Members may have different widths. The stack is padded to the largest width
and a fixed mask ``(n_models, max_width)`` marks each member's real latents.
Padding cannot leak into results, because

* the codes are ``ReLU(pre) * mask``: a padded latent is exactly 0 on every
  input, so it contributes nothing to ``x_hat`` or to the L1 term;
* the gradient through the mask is 0, so padded encoder columns, encoder
  biases and decoder rows get exactly zero gradient (and Adam, whose moments
  then stay 0, moves them by exactly 0); :meth:`zero_padding_` still resets
  them after each step so that no rounding can ever creep in;
* every per-member statistic (loss, L1 normalisation by width, dead counts,
  resampling, the exported SAE) uses the member's own width only.

Padding spends ``max_width - width`` wasted columns per member; when widths
differ a lot, :func:`toysae.sae.grid.train_grid` instead builds one ensemble
per distinct width (no padding at all) and steps them together.

Members do not interact: the summed loss has a block-diagonal gradient, Adam
is element-wise, and the decoder projection and resampling act per member, so
a member trains exactly as the same SAE would alone (up to float rounding of
the batched matmuls).
"""
