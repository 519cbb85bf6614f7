"""Backends behind one denoiser interface (`harness.denoisers.base.Denoiser`)."""
