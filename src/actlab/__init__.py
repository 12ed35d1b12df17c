"""actlab: activation-level methods (IA2, IAV, cross-model, ICAE) for Hugging Face causal LMs."""

__version__ = "0.1.0"


def _register_zoo() -> None:
    """The embedded zoo's names (``tiny``, ...) resolve in :func:`actlab.core.models.load`; an unbuilt one is built
    on first use. ``core`` does not import the zoo: it asks the hook in :mod:`actlab.core.model_names`."""
    from actlab.core.model_names import NameSource, register

    def names():
        from actlab.zoo.specs import ZOO_NAMES

        return ZOO_NAMES

    def resolve(name: str) -> str:
        from actlab.zoo.build import ensure_built

        return str(ensure_built(name))

    register(NameSource("zoo", names, resolve, where="the zoo cache (rebuild: actlab zoo build NAME --force)"))


_register_zoo()
