"""The serving artifact without Ray: the catalogue's id maps and checks, a checkpoint that carries it,
predictions and top-k in the dataset's own ids (int and string), and the refusal of an older checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sentinel_ml.errors import ConfigError
from sentinel_ml.serving.api import ApiError
from sentinel_ml.serving.catalogue import Catalogue, UnknownId, normalize
from tests.support.artifact import artifact, with_string_ids

# 4 users x 6 items; user index 0 rated items 0, 2, 5; user 1 item 2; user 2 nothing; user 3 items 1, 2.
USERS = np.array([0, 0, 0, 1, 3, 3])
ITEMS = np.array([5, 0, 2, 2, 2, 1])
USER_IDS = [10, 20, 30, 40]  # sparse integer ids: index i is USER_IDS[i]
ITEM_IDS = [101, 102, 103, 104, 105, 106]
TITLES = ["a", None, "c", "d", "e", "f"]


def small(string: bool = False, scale=(1.0, 5.0)) -> dict:
    data = artifact(USER_IDS, ITEM_IDS, USERS, ITEMS, titles=TITLES, scale=scale)
    return with_string_ids(data) if string else data


def network(num_users: int = 4, num_items: int = 6, dim: int = 3, seed: int = 0):
    from sentinel_ml.models.biased_mf import BiasedMF

    torch.manual_seed(seed)
    net = BiasedMF(num_users, num_items, dim, global_mean=3.0)
    with torch.no_grad():
        for table in (net.user_factors, net.item_factors, net.user_bias, net.item_bias):
            table.weight.normal_(0, 0.3)  # ratings well inside 1-5: no ties at the clip
    return net.eval()


def checkpoint(tmp_path, data: dict | None, net=None, name: str = "best.pt") -> str:
    from sentinel_ml.models.config import ModelConfig
    from sentinel_ml.store.checkpoint import save_checkpoint
    from sentinel_ml.training.config import Hyperparameters

    net = net or network()
    config = ModelConfig.for_data(Hyperparameters(embedding_dim=net.user_factors.embedding_dim),
                                  num_users=net.user_factors.num_embeddings,
                                  num_items=net.item_factors.num_embeddings, global_mean=3.0)
    uri = str(tmp_path / name)
    save_checkpoint(uri, net.serving_state_dict(), config.as_dict(), {"val_rmse": 0.9}, data=data)
    return uri


# -- the catalogue ---------------------------------------------------------------------------------


def test_ids_map_to_dense_indices_and_back():
    catalogue = Catalogue.from_artifact(small())
    assert (catalogue.num_users, catalogue.num_items, catalogue.id_type) == (4, 6, "int")
    assert catalogue.user_index(30) == 2 and catalogue.item_index(106) == 5
    assert catalogue.user_index("30") == 2 and catalogue.user_index(30.0) == 2  # a decimal string, a JSON 30.0
    assert catalogue.items.indices([106, "101", 106]).tolist() == [5, 0, 5]
    assert catalogue.items.id(5) == 106 and catalogue.titles[1] is None
    assert catalogue.seen(0).tolist() == [0, 2, 5] and catalogue.seen(2).tolist() == []
    assert catalogue.popularity.tolist() == [1, 1, 3, 0, 0, 1]


def test_string_ids_stay_strings_and_integers_become_their_strings():
    data = small(string=True)
    data["user_ids"][1] = "7"  # a string dataset may hold numeric-looking ids
    catalogue = Catalogue.from_artifact(data)
    assert catalogue.id_type == "string"
    assert catalogue.user_index("u-30") == 2 and catalogue.user_index(7) == catalogue.user_index("7") == 1
    assert catalogue.items.id(0) == "m-101"
    with pytest.raises(UnknownId):
        catalogue.user_index(30)  # "30" is no user of this dataset


@pytest.mark.parametrize("value, id_type, expected", [
    (42, "int", 42), ("42", "int", 42), ("-3", "int", -3), (42.0, "int", 42), ("4x", "int", None),
    ("", "int", None), ("9" * 40, "int", None), (True, "int", None), (4.5, "int", None), (None, "int", None),
    ("u1", "string", "u1"), (42, "string", "42"), (42.0, "string", "42"), (False, "string", None),
])
def test_normalize(value, id_type, expected):
    assert normalize(value, id_type) == expected


def test_unknown_ids_are_404s_naming_them_and_their_kind():
    catalogue = Catalogue.from_artifact(small(string=True))
    with pytest.raises(UnknownId) as user:
        catalogue.user_index("nobody")
    assert isinstance(user.value, ApiError) and user.value.status_code == 404
    assert user.value.message == "unknown user 'nobody': not among this model's 4 users"
    assert user.value.kind == "user" and user.value.ids == ["nobody"]
    with pytest.raises(UnknownId) as items:
        catalogue.items.indices(["m-101", *(f"x{i}" for i in range(12)), "x0"])
    assert items.value.kind == "item" and len(items.value.ids) == 12  # each unknown id once
    assert items.value.message.startswith("unknown items 'x0', 'x1'") and "…" in items.value.message
    with pytest.raises(UnknownId, match="unknown user 'a{62}…: not among"):
        catalogue.user_index("a" * 10_000)  # shown, but not whole


@pytest.mark.parametrize("change, message", [
    ({"format": 2}, "format 2"),
    ({"id_type": "uuid"}, "id_type"),
    ({"user_ids": [10, 20, 30, 10]}, "user ids twice"),
    ({"item_ids": [101, 102, 103, 104, 105, "106"]}, "item ids are ints"),
    ({"titles": ["a"]}, "1 titles for 6 items"),
    ({"popularity": torch.zeros(5, dtype=torch.int64)}, "popularity"),
    ({"seen_indptr": torch.tensor([0, 3, 4, 4])}, "seen_indptr"),
    ({"seen_indices": torch.tensor([0, 2, 9, 2, 2, 1], dtype=torch.int32)}, "seen_indices outside 0-5"),
    ({"scale": [5, 1]}, "scale"),
])
def test_an_artifact_that_does_not_fit_together_is_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        Catalogue.from_artifact({**small(), **change})


# -- checkpoints and the recommender ---------------------------------------------------------------


def test_a_checkpoint_carries_the_artifact_and_loads_it_weights_only(tmp_path):
    from sentinel_ml.store.checkpoint import load_checkpoint

    uri = checkpoint(tmp_path, small(string=True))
    saved = load_checkpoint(uri)  # torch.load(weights_only=True)
    assert saved["data"]["user_ids"] == ["u-10", "u-20", "u-30", "u-40"]
    assert saved["data"]["titles"] == TITLES and saved["data"]["seen_indices"].dtype == torch.int32
    assert "data" not in load_checkpoint(checkpoint(tmp_path, None, name="old.pt"))


def test_a_checkpoint_without_serving_data_is_refused_with_the_next_step(tmp_path):
    from sentinel_ml.serving.recommender import Recommender

    with pytest.raises(ConfigError) as refused:
        Recommender.load(checkpoint(tmp_path, None))
    assert "written by an older Sentinel" in refused.value.message and "sentinel train" in refused.value.hint


def test_a_network_of_other_sizes_than_its_data_is_refused(tmp_path):
    from sentinel_ml.serving.recommender import Recommender

    with pytest.raises(ConfigError, match="its network has 5 users and 6 items, its serving data 4 and 6"):
        Recommender.load(checkpoint(tmp_path, small(), net=network(num_users=5)))


@pytest.mark.parametrize("string", [False, True], ids=["int ids", "string ids"])
def test_predictions_and_top_k_in_the_datasets_ids_match_a_brute_force_reference(tmp_path, string):
    from sentinel_ml.serving.recommender import Recommender

    net = network()
    model = Recommender.load(checkpoint(tmp_path, small(string)), run_id="r")
    user_ids = model.catalogue.users.ids
    item_ids = model.catalogue.items.ids
    with torch.no_grad():
        every = net(torch.arange(4).repeat_interleave(6), torch.arange(6).repeat(4)).clamp(1, 5).view(4, 6).numpy()
    seen = {(u, i) for u, i in zip(USERS.tolist(), ITEMS.tolist())}
    popularity = np.bincount(ITEMS, minlength=6)

    assert model.predict(user_ids[3], item_ids[::-1]) == pytest.approx(every[3, ::-1].tolist(), abs=1e-6)
    for user in range(4):
        for min_ratings in (0, 1, 2):
            expected = sorted(((every[user, i], i) for i in range(6)
                               if (user, i) not in seen and popularity[i] >= min_ratings), reverse=True)
            top = model.top_k(user_ids[user], 10, min_ratings)
            assert [t[0] for t in top] == [item_ids[i] for _, i in expected]
            assert [t[1] for t in top] == [TITLES[i] for _, i in expected]
            assert [t[2] for t in top] == pytest.approx([s for s, _ in expected], abs=1e-6)
    assert len(model.top_k(user_ids[2], 2)) == 2
    with pytest.raises(UnknownId, match="unknown user"):
        model.top_k("nobody" if string else 99, 3)
    with pytest.raises(UnknownId, match="unknown item"):
        model.predict(user_ids[0], [item_ids[0], "m-999" if string else 999])


def test_predictions_clip_to_the_artifacts_scale_not_movielens(tmp_path):
    """A 0.5-10 scale: the same network's ratings reach past MovieLens' 1-5."""
    from sentinel_ml.serving.recommender import Recommender

    net = network(seed=3)
    with torch.no_grad():
        net.item_bias.weight[0] = 20.0  # far above any scale
        net.item_bias.weight[1] = -20.0
        net.item_bias.weight[2] = 3.5  # 3 + 3.5 + small: above 5, within 10
        net.user_factors.weight.zero_()
        net.user_bias.weight.zero_()
    wide = Recommender.load(checkpoint(tmp_path, small(scale=(0.5, 10.0)), net=net))
    assert wide.predict(10, [101, 102, 103]) == pytest.approx([10.0, 0.5, 6.5], abs=1e-6)
    narrow = Recommender.load(checkpoint(tmp_path, small(), net=net, name="narrow.pt"))
    assert narrow.predict(10, [101, 102, 103]) == pytest.approx([5.0, 1.0, 5.0], abs=1e-6)


def test_top_k_over_59k_items_is_one_scoring_pass_and_no_dense_matrix(tmp_path):
    """ML-25M's catalogue: one forward pass of [items] pairs, seen items from the CSR slice."""
    from sentinel_ml.serving.recommender import Recommender

    num_users, num_items = 3, 59_047
    rng = np.random.default_rng(0)
    seen_items = rng.choice(num_items, 5_000, replace=False)
    users = np.repeat([0, 1, 2], [5_000, 10, 0])
    items = np.concatenate([seen_items, seen_items[:10]])
    data = artifact([f"user{i}" for i in range(num_users)], [f"item{i}" for i in range(num_items)], users, items)
    net = network(num_users, num_items, dim=32)
    model = Recommender.load(checkpoint(tmp_path, data, net=net))
    assert all(np.asarray(a).ndim == 1 for a in (model.catalogue.seen_indptr, model.catalogue.seen_indices,
                                                   model.catalogue.popularity))
    calls = []
    model.network.register_forward_hook(lambda module, args, out: calls.append((args[0].shape, args[1].shape, out.shape)))

    top = model.top_k("user0", 100)

    assert calls == [((num_items,), (num_items,), (num_items,))]  # one batched scoring of the catalogue
    assert len(top) == 100 and not {int(i.removeprefix("item")) for i, _, _ in top} & set(seen_items.tolist())
    with torch.no_grad():
        scores = net(torch.zeros(num_items, dtype=torch.long), torch.arange(num_items)).clamp(1, 5)
    scores[torch.from_numpy(seen_items)] = -torch.inf
    assert [s for _, _, s in top] == pytest.approx(torch.topk(scores, 100).values.tolist(), abs=1e-6)
