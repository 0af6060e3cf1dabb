"""Methods: which parameters train, with which extra objective and stages (adapter strategies and recipes)."""

from adapters_kit.methods import autoencoder, contrastive, domain, lp_ft  # noqa: F401  (each registers its recipe)
from adapters_kit.methods.recipe import METHODS, Recipe, get_recipe, validate

__all__ = ["METHODS", "Recipe", "get_recipe", "validate"]
