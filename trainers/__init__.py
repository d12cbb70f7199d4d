"""Evaluation protocol plug-ins, one module per protocol; importing this package registers them.

- ``finetune``: the release's fine-tune (all weights trainable), a ``TrainerX``.
- ``linear``: the release's linear probe (frozen backbone, BN + linear head), a ``TrainerX``;
  trains on cached features unless ``TRAINER.LINEAR.FEATURE_CACHE`` is False.
- ``lora``: LoRA adapters (peft) on the attention projections, trained with a linear head.
- ``partial``: fine-tune of the last ``TRAINER.PARTIAL.BLOCKS`` blocks and the final norm.
- ``logreg``: L-BFGS logistic regression on cached features, C chosen on validation data.
- ``knn``: cosine k-nearest neighbours on cached features, several k in one pass.
- ``prototype``: nearest class mean after centring and L2 normalisation.
"""

from sarfewshot.trainers import finetune, knn, linear, logreg, lora, partial, prototype  # noqa: F401
