#!/usr/bin/env bash
# Regenerates the demo menu's prompts with espeak-ng (Debian package `espeak-ng`).
# Japanese text is written in kana as it is pronounced: espeak-ng reads kanji as
# "Chinese letter", and particles written は/へ would be read ha/he.
# Usage: prompts/generate.sh   (from the repository root or anywhere)
set -euo pipefail
cd "$(dirname "$0")"
command -v espeak-ng >/dev/null || { echo "install espeak-ng (apt-get install espeak-ng)" >&2; exit 1; }

say() { # lang voice name text
  mkdir -p "$1"
  espeak-ng -v "$2" -s 150 -w "$1/$3.wav" "$4"
}

en_digits=(zero one two three four five six seven eight nine)
say en en-us welcome "Welcome to Careline. Press any key from zero to nine, or star, to hear it back. Press pound to end the call."
for i in "${!en_digits[@]}"; do say en en-us "digit-$i" "You pressed ${en_digits[$i]}."; done
say en en-us digit-star "You pressed star."
say en en-us goodbye "Thank you for calling Careline. Goodbye."

ja_digits=(ぜろ いち に さん よん ご ろく なな はち きゅう)
say ja ja welcome "ケアラインに ようこそ。 ぜろから きゅうまでの ボタンか、 ほしを おすと、 その ばんごうを よみあげます。 おわるときは シャープを おしてください。"
for i in "${!ja_digits[@]}"; do say ja ja "digit-$i" "${ja_digits[$i]}が おされました。"; done
say ja ja digit-star "ほしが おされました。"
say ja ja goodbye "おでんわ ありがとうございました。 しつれいいたします。"
