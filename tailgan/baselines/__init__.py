"""Baselines the classifier tables compare against, each with its own training procedure.

- :mod:`tailgan.baselines.transfer`: DFG's rows, ``original`` / ``finetune`` / ``delta`` / ``dfg`` (a network
  pre-trained on a source set, transferred to the long-tailed target);
- :mod:`tailgan.baselines.joint`: a classifier trained jointly with a CycleGAN / StarGAN translator
  (``cyclegan-aug`` / ``cyclegan-alt`` / ``stargan-aug`` / ``stargan-alt``), and ``binary_pair``, the two-class
  task made from any dataset.

They are strategies of ``tailgan classify`` (``tailgan.classify.train`` registers the trainer kinds ``transfer`` and
``joint`` that call them), but import nothing from ``tailgan.classify``: they sit beside ``tailgan.report`` in the
layer contract, and score with ``tailgan.scores``.
"""
