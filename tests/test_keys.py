from pipeline.keys import is_valid_key, sample_key


def test_plain_ids_are_kept_readable():
    assert sample_key("magpie", "demo-0001") == "magpie-demo-0001"
    assert sample_key("arena", "row17") == "arena-row17"


def test_unsafe_ids_become_valid_and_stay_distinct():
    ids = ["a.b", "a_b", "a/b", "a b", "日本語", "a.b.c.d", "", "x" * 200, "x" * 201]
    keys = [sample_key("src", i) for i in ids]
    assert all(is_valid_key(k) for k in keys), keys
    assert len(set(keys)) == len(keys)
    assert all("." not in k for k in keys)
    assert all(len(k) <= 4 + 64 for k in keys)


def test_keys_are_deterministic():
    assert sample_key("s", "id.with.dots") == sample_key("s", "id.with.dots")


def test_validity_rule():
    assert is_valid_key("abc-DEF_123")
    assert not is_valid_key("abc.flac")
    assert not is_valid_key("")
    assert not is_valid_key("a/b")
