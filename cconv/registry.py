"""One lookup rule for named objects: optimizers, losses, metrics, initializers,
activations and layers each keep one :class:`Registry` (a declarative name table at the
bottom of their module) and export its ``get`` / ``serialize`` / ``deserialize``.

Names are matched ignoring case and underscores, so ``"he_normal"``, ``"HeNormal"`` and
``"HENORMAL"`` are one name, and ``"rmsprop"`` finds ``RMSprop``. Every class is known by its
own class name; aliases (``"mse"``, ``"acc"``, ``"Convolution2D"``) are declared once, in the
module's table. Serialized form (Keras's): ``{"class_name": type(obj).__name__, "config":
obj.get_config()}``.

Custom classes (a user's layers, losses, metrics, initializers, ...) are found by every
registry, as in Keras: registered once with :func:`register_keras_serializable` (under
``"package>Name"``, also found by ``"Name"``), or for a while with
:func:`custom_object_scope` / ``load_model(..., custom_objects={...})``. Custom objects are
looked up before the built-in names (a ``custom_objects`` entry may replace a built-in class),
and a registered class is serialized with Keras's ``"registered_name"`` key.
"""

import inspect
import threading

__all__ = ["Configurable", "Registry", "canonical", "register_keras_serializable",
           "custom_object_scope", "CustomObjectScope", "get_custom_objects",
           "get_registered_name", "get_registered_object"]

# Keras's global dictionaries: "package>Name" -> object, and object -> "package>Name".
_GLOBAL_CUSTOM_OBJECTS = {}
_GLOBAL_CUSTOM_NAMES = {}
_scopes = threading.local()     # the stack of custom_object_scope dicts of each thread


def register_keras_serializable(package="Custom", name=None):
    """Class decorator (Keras's): make a custom class (or function) loadable from model files
    (``.keras``, ``.npz``) and configs, under ``"package>name"`` (``name`` defaults to the
    class's name; ``"name"`` alone finds it too).

    Example::

        @cconv.saving.register_keras_serializable(package="my")
        class Scale(cconv.layers.Layer): ...

    Raises:
        ValueError: a class without ``get_config``, or ``package`` / ``name`` that is not a
            non-empty string without ``">"``.
    """
    if not isinstance(package, str) or not package or ">" in package:
        raise ValueError(f"register_keras_serializable: package must be a non-empty string "
                         f"without '>'; got package={package!r}.")
    if name is not None and (not isinstance(name, str) or not name or ">" in name):
        raise ValueError(f"register_keras_serializable: name must be None or a non-empty "
                         f"string without '>'; got name={name!r}.")

    def decorator(arg):
        if inspect.isclass(arg) and not hasattr(arg, "get_config"):
            raise ValueError(f"register_keras_serializable: cannot register {arg.__name__}, "
                             f"a class without a get_config() method.")
        registered = f"{package}>{name if name is not None else arg.__name__}"
        _GLOBAL_CUSTOM_OBJECTS[registered] = arg
        _GLOBAL_CUSTOM_NAMES[arg] = registered
        return arg

    return decorator


def get_custom_objects():
    """The global dictionary of registered objects (``"package>Name"`` -> object), as
    Keras's ``get_custom_objects()``: entries added to it directly are found too."""
    return _GLOBAL_CUSTOM_OBJECTS


def get_registered_name(obj):
    """``"package>Name"`` for a registered object, else its ``__name__``."""
    if obj in _GLOBAL_CUSTOM_NAMES:
        return _GLOBAL_CUSTOM_NAMES[obj]
    return getattr(obj, "__name__", type(obj).__name__)


def _scope_stack():
    if not hasattr(_scopes, "stack"):
        _scopes.stack = []
    return _scopes.stack


def _custom_lookup(name, custom_objects=None):
    """The custom object ``name`` names, or None: the innermost active scope first, then the
    registered objects (by ``"package>Name"`` or by ``"Name"``), then ``custom_objects``."""
    if not isinstance(name, str):
        return None
    for scope in reversed(_scope_stack()):
        if name in scope:
            return scope[name]
    if name in _GLOBAL_CUSTOM_OBJECTS:
        return _GLOBAL_CUSTOM_OBJECTS[name]
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    return None


def _registered_by_bare_name(name, base):
    """The last registered subclass of ``base`` whose ``"package>Name"`` ends in ``name``."""
    for key, obj in reversed(list(_GLOBAL_CUSTOM_OBJECTS.items())):
        if (key.split(">", 1)[-1] == name and isinstance(obj, type)
                and issubclass(obj, base)):
            return obj
    return None


def get_registered_object(name, custom_objects=None, module_objects=None):
    """The object registered or in scope under ``name`` (Keras's lookup order: active
    :func:`custom_object_scope` s, registered objects, ``custom_objects``,
    ``module_objects``), or None."""
    found = _custom_lookup(name, custom_objects)
    if found is None and module_objects and name in module_objects:
        found = module_objects[name]
    return found


class CustomObjectScope:
    """``with CustomObjectScope({"Scale": Scale}): ...``: the names are found by every
    registry (and so by ``load_model`` and ``from_config``) inside the block, on this thread.
    Nested scopes add up; the innermost wins.

    Raises:
        TypeError: an argument that is not a dict (or None).
    """

    def __init__(self, *custom_objects):
        for i, objects in enumerate(custom_objects):
            if objects is not None and not isinstance(objects, dict):
                raise TypeError(f"custom_object_scope: argument {i} must be a dict of name -> "
                                f"object; got {type(objects).__name__}.")
        merged = {}
        for objects in custom_objects:
            merged.update(objects or {})
        self.custom_objects = merged

    def __enter__(self):
        _scope_stack().append(self.custom_objects)
        return self

    def __exit__(self, *exc):
        _scope_stack().pop()


custom_object_scope = CustomObjectScope


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
        """The class for ``name``: a custom class in scope or registered
        (:func:`register_keras_serializable`) under exactly that name first, then the
        built-in names (case and underscores ignored), then a registered class by its bare
        name (``"Scale"`` for ``"my>Scale"``).

        Raises:
            ValueError: an unknown name; the message lists the known ones.
        """
        custom = _custom_lookup(name)
        if isinstance(custom, type) and issubclass(custom, self.base):
            return custom
        cls = self._by_key.get(canonical(name))
        if cls is None and isinstance(name, str):
            cls = _registered_by_bare_name(name, self.base)
        if cls is None:
            raise ValueError(f"Unknown {self.kind} {name!r} (a custom class: decorate it with "
                             f"cconv.saving.register_keras_serializable() or pass "
                             f"custom_objects={{{str(name)!r}: cls}} to load_model). Known "
                             f"{self.plural}: {self.known()}.")
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
        out = {"class_name": type(obj).__name__, "config": obj.get_config()}
        if type(obj) in _GLOBAL_CUSTOM_NAMES:
            out["registered_name"] = _GLOBAL_CUSTOM_NAMES[type(obj)]
        return out

    def deserialize(self, config):
        """An object from :meth:`serialize`'s dict (or from a name).

        Raises:
            ValueError: an unknown class name; the message lists the known ones.
        """
        if isinstance(config, str):
            return self.get(config)
        registered = _custom_lookup(config.get("registered_name"))
        cls = registered if isinstance(registered, type) and issubclass(registered, self.base) \
            else self.lookup(config.get("class_name"))
        return self._from_config(cls, dict(config.get("config") or {}))
