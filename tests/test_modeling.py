import pytest
import torch
from transformers import BertModel

from adapters_kit import TrainConfig
from adapters_kit.methods.adapters import block_linear_names
from adapters_kit.model.heads import POOLERS
from adapters_kit.model.modeling import build_model


@pytest.fixture
def backbone(tiny_model_dir):
    return BertModel.from_pretrained(tiny_model_dir)


def test_lora_targets_are_block_linears_only(backbone):
    names = block_linear_names(backbone)
    assert len(names) == 2 * 6  # q, k, v, attention out, intermediate, output per layer
    assert all(".layer." in n for n in names)
    assert not any("pooler" in n or "embeddings" in n for n in names)


def test_probe_trains_only_the_head(backbone):
    model = build_model(TrainConfig(method="probe", pooling="mean"), backbone, num_labels=3)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.1.weight", "head.1.bias"]
    assert model.trainable_parameters() == (32 * 3 + 3, sum(p.numel() for p in model.parameters()))


def test_lora_trains_lora_matrices_and_head(backbone):
    model = build_model(TrainConfig(method="lora", pooling="mean", lora_r=4, adapter_layers=0), backbone,
                        num_labels=3)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {n.split(".")[0] for n in trainable} == {"backbone", "head"}
    backbone_trainable = [n for n in trainable if n.startswith("backbone")]
    assert len(backbone_trainable) == 12 * 2 and all("lora_" in n for n in backbone_trainable)
    lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    # per layer: 4 projections 32->32, one 32->64, one 64->32; each LoRA has r*(in+out) weights
    assert lora_params == 2 * (4 * 4 * 64 + 4 * 96 + 4 * 96)


def test_lora_adapts_the_top_half_of_the_blocks_by_default(tiny_model_dir):
    from transformers import BertConfig, BertModel

    for layers, adapted in ((2, {1}), (3, {1, 2}), (5, {2, 3, 4})):  # ceil(n / 2) from the top
        bb = BertModel(BertConfig(hidden_size=8, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=16))
        model = build_model(TrainConfig(method="lora", pooling="mean", lora_r=2), bb, num_labels=2)
        blocks = {int(n.split(".layer.")[1].split(".")[0]) for n, p in model.named_parameters() if "lora_" in n}
        assert blocks == adapted, layers


def test_features_path_equals_full_forward(backbone, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = build_model(TrainConfig(method="probe", pooling="mean"), backbone, num_labels=3).eval()
    batch = tok(["team win match", "bank profit shares rise today"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch), model(features=model.features(**batch)))


def test_poolers_against_direct_computation():
    h = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(POOLERS.get("mean")(h, mask), torch.stack([h[0, :2].mean(0), h[1].mean(0)]))
    assert torch.equal(POOLERS.get("cls")(h, mask), h[:, 0])
    assert torch.equal(POOLERS.get("last")(h, mask), torch.stack([h[0, 1], h[1, 2]]))
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])  # left padding: last real token is the final position
    assert torch.equal(POOLERS.get("last")(h, left), h[:, 2])


def test_head_init_depends_on_seed_only(backbone):
    from adapters_kit.model.heads import build_head

    cfg = TrainConfig(method="probe", pooling="mean", seed=5)
    a = build_model(cfg, backbone, num_labels=3).head.state_dict()
    torch.rand(1000)  # randomness consumed elsewhere must not change the head
    b = build_model(cfg, backbone, num_labels=3).head.state_dict()
    torch.manual_seed(5)
    c = build_head("linear", 32, 3).state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k])
    other = build_model(cfg.replace(seed=6), backbone, num_labels=3).head.state_dict()
    assert not torch.equal(a["1.weight"], other["1.weight"])


def test_attention_dropout_defaults_by_method_and_reaches_the_backbone(tiny_model_dir):
    """PEFT methods train without attention-probability dropout unless told otherwise; methods that retrain the
    backbone's weights keep its own value. Checked on the built model: with every other dropout at 0, a train-mode
    forward equals the eval-mode one exactly when attention dropout is off."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from adapters_kit.modalities import get_modality
    from adapters_kit.trainer import resolve_config

    src = BertModel.from_pretrained(tiny_model_dir)
    BertModel(BertConfig(**{**src.config.to_dict(), "hidden_dropout_prob": 0.0,
                            "attention_probs_dropout_prob": 0.5})).save_pretrained(f"{tiny_model_dir}-attn")
    path = f"{tiny_model_dir}-attn"
    tok = BertTokenizerFast.from_pretrained(tiny_model_dir)
    batch = tok(["team win match goal", "bank profit shares rise"], padding=True, return_tensors="pt")

    def resolved(**kw):
        return resolve_config(TrainConfig(model=path, pooling="mean", lora_dropout=0.0, head_dropout=0.0, **kw))

    expected = {"lora": 0.0, "dora": 0.0, "ia3": 0.0, "lp-ft": 0.0, "full": None, "unfreeze-top-k": None,
                "probe": None}
    assert {m: resolved(method=m).attention_dropout for m in expected} == expected
    assert resolved(method="lora", attention_dropout=0.25).attention_dropout == 0.25
    assert resolved(method="dann", target_data="x.csv").attention_dropout == 0.0  # its adapter's (LoRA) default

    def train_equals_eval(cfg):
        backbone = get_modality("text", cfg).load_backbone(path, tok)
        model = build_model(cfg, backbone, num_labels=2)
        torch.manual_seed(0)
        with torch.no_grad():
            trained = model.train()(**batch)
            return torch.equal(trained, model.eval()(**batch)), backbone.config.attention_probs_dropout_prob

    assert train_equals_eval(resolved(method="lora")) == (True, 0.0)
    assert train_equals_eval(resolved(method="lora", attention_dropout=0.5)) == (False, 0.5)
    assert train_equals_eval(resolved(method="full")) == (False, 0.5)  # the backbone's own
