"""semlat's one text front-end: units and normalisation (:mod:`.units`), the espeak-ng wrapper
(:mod:`.espeak`), and the TTS's tokenisers and vocabularies (:mod:`.frontend`: characters with F5-TTS's rules,
pinyin, phonemes). The corpus generator, the TTS, the judges and evaluation all use these."""
