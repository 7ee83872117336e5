"""Text samples shared by the text tests."""

# Every released language, plus the things BPE front ends get wrong: digit runs, punctuation
# clusters, runs of spaces/tabs, blank lines, CRLF, emoji (incl. ZWJ sequences), contractions.
MULTILINGUAL = [
    "你好，世界！今天天气很好，我们去公园散步吧。",
    "The quick brown fox jumps over the lazy dog. It's 3:45 pm, isn't it?",
    "こんにちは、世界。カタカナとひらがな、そして漢字。",
    "안녕하세요, 세계! 오늘은 날씨가 좋네요.",
    "Grüße aus München: Äpfel, Öl und Straße kosten 12,50 €.",
    "Où est la bibliothèque ? C'est l'hôtel « Le Château » à Noël.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "A avó comeu pão de queijo e tomou café na São João às 7h.",
    "¿Dónde está la estación? ¡El niño tiene 10 años y mañana viaja!",
    "L'università è chiusa perché è già sera; però c'è più tempo.",
    "1234567890 3.14159 1,000,000 -42 +7 1e-9 0x1F",
    "!!! ??? ... --- ((( ))) [x] {y} <z> \"q\" 'p' @#$%^&*_=+|\\/~`",
    "a  b   c    d\t\te \t f" + " " * 9 + "g",
    "line one\nline two\n\n\nline five\r\nline six\n",
    "   leading and trailing   ",
    "emoji 😀👍🏽 👨‍👩‍👧‍👦 🇨🇳🇺🇸 ❤️ ✨",
    "I'm sure they'll say we've done what you'd think THEY'RE doing, don't ya?",
    "混合 text 与 English 和 数字 2024 年",
]
