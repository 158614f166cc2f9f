"""Seeing what a classifier looks at: Grad-CAM and RISE heat maps, t-SNE of its features.

* :mod:`tailgan.explain.heatmaps`: ``explain_heatmaps`` (several classifiers side by side, one PNG),
  ``gradcam_maps``, ``rise_maps``, ``heatmaps``, ``plot_heatmaps``;
* :mod:`tailgan.explain.tsne`: ``plot_tsne``, ``penultimate_features``, ``tsne_embedding``;
* :mod:`tailgan.nets.classifier_io`: ``save_classifier`` / ``load_classifier`` (what the CLI reads);
* :mod:`tailgan.explain.cli`: ``tailgan explain heatmaps|tsne``.

Nothing is imported here: ``grad-cam`` (with OpenCV) and scikit-learn's t-SNE take seconds to import,
and every ``tailgan`` command imports the CLI module of this package.
"""
