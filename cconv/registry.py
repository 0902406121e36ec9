"""One lookup rule for named objects: optimizers, losses, metrics, initializers,
activations and layers each keep one :class:`Registry` (a declarative name table at the
bottom of their module) and export its ``get`` / ``serialize`` / ``deserialize``.

Names are matched ignoring case and underscores, so ``"he_normal"``, ``"HeNormal"`` and
``"HENORMAL"`` are one name, and ``"rmsprop"`` finds ``RMSprop``. Every class is known by its
own class name; aliases (``"mse"``, ``"acc"``, ``"Convolution2D"``) are declared once, in the
module's table. Serialized form (Keras's): ``{"class_name": type(obj).__name__, "config":
obj.get_config()}``.
"""

__all__ = ["Configurable", "Registry", "canonical"]


def canonical(name):
    """The lookup key of a name: lower case without underscores (``"He_Normal"`` ->
    ``"henormal"``)."""
    return str(name).lower().replace("_", "")


class Configurable:
    """The config protocol behind :meth:`Registry.serialize` / :meth:`Registry.deserialize`:
    ``get_config()`` is a dict of the constructor's keyword arguments (none by default),
    ``from_config(config)`` builds the object again from it, and ``repr`` shows it:
    ``L2({'l2': 0.01})``. Base of initializers, regularizers, schedules, metrics and losses."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


def _default_from_name(cls, name):
    return cls()


def _default_from_config(cls, config):
    return cls.from_config(config)


class Registry:
    """Names -> classes for one kind of object.

    Args:
        kind: what is looked up, for messages ("optimizer", "loss", ...).
        plural: its plural (default ``kind + "s"``).
        base: the base class; instances of it are returned as they are by :meth:`get`.
        names: ``{name: class}``: the documented names (listed in error messages) and aliases.
        classes: further classes known only by their class name.
        from_name: ``(cls, name) -> object`` for a name given to :meth:`get`
            (default ``cls()``).
        from_config: ``(cls, config_dict) -> object`` for :meth:`deserialize`
            (default ``cls.from_config(config)``).
    """

    def __init__(self, kind, base, names, classes=(), from_name=None, from_config=None,
                 plural=None):
        self.kind = kind
        self.plural = plural or kind + "s"
        self.base = base
        self.names = dict(names)
        self._from_name = from_name or _default_from_name
        self._from_config = from_config or _default_from_config
        self._by_key = {}
        for cls in list(self.names.values()) + list(classes):
            self._by_key[canonical(cls.__name__)] = cls
        for name, cls in self.names.items():
            self._by_key[canonical(name)] = cls

    def known(self):
        """The documented names, sorted and comma-separated."""
        return ", ".join(sorted(self.names))

    def register(self, cls, name=None):
        """Make ``cls`` known under ``name`` (default: its class name); returns ``cls``, so it
        works as a class decorator for custom classes to be loaded from files."""
        name = name or cls.__name__
        self.names[name] = cls
        self._by_key[canonical(name)] = cls
        self._by_key[canonical(cls.__name__)] = cls
        return cls

    def unregister(self, name):
        """Forget ``name`` (and its class's own name)."""
        cls = self.names.pop(name, None)
        for key in {canonical(name), canonical(getattr(cls, "__name__", name))}:
            self._by_key.pop(key, None)

    def classes(self):
        """``{class name: class}`` for every registered class (aliases excluded)."""
        return {cls.__name__: cls for cls in self._by_key.values()}

    def lookup(self, name):
        """The class for ``name`` (case and underscores ignored).

        Raises:
            ValueError: an unknown name; the message lists the known ones.
        """
        cls = self._by_key.get(canonical(name))
        if cls is None:
            raise ValueError(f"Unknown {self.kind} {name!r}. Known {self.plural}: {self.known()}.")
        return cls

    def get(self, identifier):
        """An object from an instance (returned as is), a class, a name or a config dict.

        Raises:
            ValueError: an unknown name. TypeError: anything else.
        """
        if isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, type) and issubclass(identifier, self.base):
            return identifier()
        if isinstance(identifier, str):
            return self._from_name(self.lookup(identifier), identifier)
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        raise TypeError(
            f"{self.kind} must be a name ({self.known()}), a config dict or a "
            f"{self.base.__module__}.{self.base.__name__}; got {identifier!r} of type "
            f"{type(identifier).__name__}."
        )

    def serialize(self, obj):
        """``{"class_name": ..., "config": ...}`` for ``obj``."""
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, config):
        """An object from :meth:`serialize`'s dict (or from a name).

        Raises:
            ValueError: an unknown class name; the message lists the known ones.
        """
        if isinstance(config, str):
            return self.get(config)
        cls = self.lookup(config.get("class_name"))
        return self._from_config(cls, dict(config.get("config") or {}))
