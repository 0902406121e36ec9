"""Model benchmarks: Keras vs cconv images/s for fit and predict (LeNet-5, tutorial CNN).

Both models get the same architecture and the same initial weights; ``fit`` runs one epoch of
``batch_size=64`` over ``N_FIT`` random images (after a warm-up epoch), ``predict`` runs over
``N_PREDICT`` images with ``batch_size=64``; single-image latency is also reported.
"""
import statistics
import time

import numpy as np

N_FIT = 4096
N_PREDICT = 4096


def _keras_lenet5(keras):
    L = keras.layers
    init = keras.initializers.HeNormal(seed=0)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(6, 5, padding="same", activation="relu", kernel_initializer=init),
        L.MaxPooling2D(2, 2),
        L.Conv2D(16, 5, padding="valid", activation="relu", kernel_initializer=init),
        L.MaxPooling2D(2, 2),
        L.Flatten(),
        L.Dense(120, activation="relu", kernel_initializer=init),
        L.Dense(84, activation="relu", kernel_initializer=init),
        L.Dense(10, activation="softmax", kernel_initializer=init),
    ])


def _keras_tutorial(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10),
    ])


def _timed(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(repeat, frameworks):
    import cconv

    rows = []
    have_keras = "tensorflow" in frameworks
    if have_keras:
        import keras
    rng = np.random.default_rng(0)
    specs = [
        ("LeNet-5", (28, 28, 1), cconv.models.lenet5, _keras_lenet5 if have_keras else None,
         "categorical_crossentropy"),
        ("tutorial CNN", (32, 32, 3), cconv.models.tutorial_cnn, _keras_tutorial if have_keras else None,
         None),
    ]
    print("\n| model | what | cconv images/s | keras images/s | cconv/keras |\n|---|---|---|---|---|")
    for name, shape, make_cconv, make_keras, _ in specs:
        x = rng.random((N_FIT,) + shape, dtype=np.float32)
        labels = rng.integers(0, 10, N_FIT)
        y = np.eye(10, dtype=np.float32)[labels]
        model = make_cconv()
        if not getattr(model, "compiled", False) or name != "LeNet-5":
            model.compile(optimizer="adam",
                          loss=cconv.losses.CategoricalCrossentropy(from_logits=name != "LeNet-5"),
                          metrics=["accuracy"])
        km = None
        if make_keras:
            km = make_keras(keras)
            km.compile(optimizer="adam",
                       loss=keras.losses.CategoricalCrossentropy(from_logits=name != "LeNet-5"),
                       metrics=["accuracy"])
            model.set_weights(km.get_weights())
        fit_repeat = max(1, repeat // 3)
        results = {
            "fit": (lambda: model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False),
                    (lambda: km.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)) if km else None,
                    N_FIT, fit_repeat),
            "predict": (lambda: model.predict(x[:N_PREDICT], batch_size=64, verbose=0),
                        (lambda: km.predict(x[:N_PREDICT], batch_size=64, verbose=0)) if km else None,
                        N_PREDICT, repeat),
            "predict 1 image": (lambda: model.predict(x[:1], verbose=0),
                                (lambda: km.predict(x[:1], verbose=0)) if km else None, 1, repeat * 5),
        }
        for what, (ours, theirs, count, rep) in results.items():
            row = {"model": name, "what": what, "cconv_images_s": count / _timed(ours, rep)}
            if theirs:
                row["keras_images_s"] = count / _timed(theirs, rep)
                row["ratio"] = row["cconv_images_s"] / row["keras_images_s"]
            rows.append(row)
            print(f"| {name} | {what} | {row['cconv_images_s']:,.0f} | "
                  f"{row.get('keras_images_s', float('nan')):,.0f} | {row.get('ratio', float('nan')):.2f}x |",
                  flush=True)
    return rows
