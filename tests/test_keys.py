from pipeline.keys import MAX_KEY_CHARS, is_valid_key, sample_key


def test_plain_ids_are_kept_readable():
    assert sample_key("magpie", "demo-0001") == "magpie-demo-0001"
    assert sample_key("arena", "row17") == "arena-row17"


def test_unsafe_ids_become_valid_and_stay_distinct():
    ids = ["a.b", "a_b", "a/b", "a b", "日本語", "a.b.c.d", "", "x" * 200, "x" * 201]
    keys = [sample_key("src", i) for i in ids]
    assert all(is_valid_key(k) for k in keys), keys
    assert len(set(keys)) == len(keys)
    assert all("." not in k for k in keys)
    assert all(len(k) <= 90 for k in keys)


def test_keys_are_deterministic():
    assert sample_key("s", "id.with.dots") == sample_key("s", "id.with.dots")


def test_validity_rule():
    assert is_valid_key("abc-DEF_123")
    assert not is_valid_key("abc.flac")
    assert not is_valid_key("")
    assert not is_valid_key("a/b")


def test_keys_are_bounded_whatever_the_source_and_id():
    for source in ("s", "x" * 32):
        for row_id in ("a", "日本語" * 50, "z" * 500, "a.b" * 100):
            key = sample_key(source, row_id)
            assert is_valid_key(key) and len(key) <= MAX_KEY_CHARS
            assert len(key + ".flac") <= 100  # a USTAR name field: no PAX header needed


def test_no_id_can_take_another_rows_key():
    """Adversarial ids: ones shaped like a digested key, like the old duplicate marker, or equal to a digest."""
    honest = ["a", "a.b", "", "x" * 200]
    tails = [sample_key("s", i).removeprefix("s-") for i in honest] + [
        sample_key("s", "a", duplicate_of_row=52).removeprefix("s-")
    ]
    adversarial = tails + [t.split("_")[-1] for t in tails] + ["a#duplicate52", "a_duplicate52", "a-b", "a_b"]
    ids = list(dict.fromkeys(honest + adversarial))  # distinct ids, as the rows would hold them
    keys = [sample_key("s", i) for i in ids] + [sample_key("s", "a", duplicate_of_row=52)]
    assert len(set(keys)) == len(keys)
    assert sample_key("s", "a", duplicate_of_row=52) != sample_key("s", "a", duplicate_of_row=53)
