"""Class names of the labelled datasets, in label order.

The metrics name the share of samples the project's dataset classifier assigns to each class
(class coverage: a generator that draws only shirts and bags can still reach a fair FID), and a
histogram reads better with names than with label numbers.
"""

from __future__ import annotations

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fmnist": ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"),
    "mnist": tuple(str(d) for d in range(10)),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),  # the ten Kuzushiji hiragana
    "letters": tuple("abcdefghijklmnopqrstuvwxyz"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


def class_names(dataset: str, num_classes: int) -> tuple[str, ...]:
    """``dataset``'s class names, or ``class 0`` ... where the dataset has none listed here."""
    names = CLASS_NAMES.get(dataset)
    if names is not None and len(names) == num_classes:
        return names
    return tuple(f"class {k}" for k in range(num_classes))
