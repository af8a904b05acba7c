from pipeline.speakable import make_speakable, split_for_tts


def test_markdown_code_and_urls_are_not_read_aloud():
    text = (
        "# 見出し\n\n**太字**と`code`です。\n- 項目一\n- 項目二\n\n"
        "```python\nprint(1)\n```\n詳しくは https://example.com を見てください。"
    )
    spoken = make_speakable(text)
    assert "#" not in spoken and "*" not in spoken and "`" not in spoken and "http" not in spoken
    assert "print" not in spoken
    assert spoken.startswith("見出し。太字とcodeです。項目一。項目二。")


def test_markdown_links_keep_their_text():
    assert make_speakable("[公式サイト](https://example.com)を参照") == "公式サイトを参照。"


def test_split_prefers_sentence_then_clause_boundaries():
    text = "一つ目の文です。二つ目の文です。三つ目、とても長い文になります。"
    pieces = split_for_tts(text, 12)
    assert pieces == ["一つ目の文です。", "二つ目の文です。", "三つ目、", "とても長い文になります。"]
    assert all(len(p) <= 12 for p in pieces)
    assert "".join(pieces) == text
    assert split_for_tts("あ" * 25, 10) == ["あ" * 10, "あ" * 10, "あ" * 5]
