"""Minority-class data for classifiers: generated images, their filter and recognition guard
(:mod:`tailgan.synthesis.images`); and, without an image GAN, class-conditional generators of classifier features
(:mod:`tailgan.synthesis.features`: distribution calibration, a feature diffusion model, the prototype filter)
and M2m's translation of majority images by a classifier's gradient (:mod:`tailgan.synthesis.m2m`)."""
