//! Unit tests needing a real lexicon (loaded from `prompts/`).

use super::*;
use std::path::Path;

pub(super) fn lex(lang: &str) -> Lexicon {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    Lexicon::load(&dir, lang).expect("bundled lexicon must load")
}

#[test]
fn loads_all_languages() {
    for l in ["es", "en", "it", "pt"] {
        assert_eq!(lex(l).lang(), l);
    }
}

fn at(y: i32, m: u32, d: u32) -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(y, m, d).and_then(|x| x.and_hms_opt(10, 0, 0)).expect("test dates are valid")
}

fn slots(lang: &str, text: &str, now: chrono::NaiveDateTime) -> Slots {
    understand(text, &lex(lang), &Vocabulary::default(), now).slots
}

fn date(lang: &str, text: &str, now: chrono::NaiveDateTime) -> Option<String> {
    slots(lang, text, now).date
}

fn time(lang: &str, text: &str) -> Option<String> {
    slots(lang, text, at(2026, 11, 23)).time
}

#[test]
fn date_year_rollover() {
    assert_eq!(date("es", "el 3 de enero", at(2026, 12, 20)).as_deref(), Some("2027-01-03"));
    assert_eq!(date("en", "January 3rd", at(2026, 12, 20)).as_deref(), Some("2027-01-03"));
    assert_eq!(date("es", "el 20 de diciembre", at(2026, 12, 20)).as_deref(), Some("2026-12-20"));
    assert_eq!(date("es", "mañana", at(2026, 12, 31)).as_deref(), Some("2027-01-01"));
}

#[test]
fn weekday_on_same_weekday_is_next_week() {
    // 2026-11-27 is a Friday.
    assert_eq!(date("es", "el viernes", at(2026, 11, 27)).as_deref(), Some("2026-12-04"));
    assert_eq!(date("es", "el sábado", at(2026, 11, 27)).as_deref(), Some("2026-11-28"));
    assert_eq!(date("en", "next Monday", at(2026, 11, 27)).as_deref(), Some("2026-11-30"));
    assert_eq!(date("it", "lunedì prossimo", at(2026, 11, 23)).as_deref(), Some("2026-11-30"));
    assert_eq!(date("pt", "na segunda", at(2026, 11, 25)).as_deref(), Some("2026-11-30"));
}

#[test]
fn relative_days() {
    let now = at(2026, 11, 23);
    assert_eq!(date("es", "hoy", now).as_deref(), Some("2026-11-23"));
    assert_eq!(date("es", "pasado mañana", now).as_deref(), Some("2026-11-25"));
    assert_eq!(date("it", "dopodomani", now).as_deref(), Some("2026-11-25"));
    assert_eq!(date("en", "the day after tomorrow", now).as_deref(), Some("2026-11-25"));
    assert_eq!(date("pt", "amanhã", now).as_deref(), Some("2026-11-24"));
    // A span: its first day, with `date_to` its last.
    assert_eq!(date("es", "la semana que viene", now).as_deref(), Some("2026-11-30"));
    assert_eq!(slots("es", "la semana que viene", now).date_to.as_deref(), Some("2026-12-06"));
}

#[test]
fn explicit_and_birth_dates() {
    let now = at(2026, 11, 23);
    assert_eq!(date("es", "el 3 de diciembre de 2027", now).as_deref(), Some("2027-12-03"));
    assert_eq!(date("es", "el 31 de febrero", now), None);
    let s = slots("es", "tres de mayo del cincuenta", now);
    assert_eq!(s.date_of_birth.as_deref(), Some("1950-05-03"));
    assert_eq!(s.date, None);
    assert_eq!(slots("en", "born 5/3/1950", now).date_of_birth.as_deref(), Some("1950-03-05"));
}

#[test]
fn times_all_languages() {
    assert_eq!(time("es", "a las diez").as_deref(), Some("10:00"));
    assert_eq!(time("es", "a las once y media").as_deref(), Some("11:30"));
    assert_eq!(time("es", "a las cuatro de la tarde").as_deref(), Some("16:00"));
    assert_eq!(time("es", "a las cinco").as_deref(), Some("17:00"));
    assert_eq!(time("es", "por la mañana a las siete").as_deref(), Some("07:00"));
    assert_eq!(time("es", "a la una menos cuarto").as_deref(), Some("12:45"));
    assert_eq!(time("es", "10.30").as_deref(), Some("10:30"));
    assert_eq!(time("en", "half past eleven").as_deref(), Some("11:30"));
    assert_eq!(time("en", "10 am").as_deref(), Some("10:00"));
    assert_eq!(time("en", "10am").as_deref(), Some("10:00"));
    assert_eq!(time("en", "quarter to one").as_deref(), Some("12:45"));
    assert_eq!(time("en", "at 3 pm").as_deref(), Some("15:00"));
    assert_eq!(time("it", "alle quattro del pomeriggio").as_deref(), Some("16:00"));
    assert_eq!(time("it", "alle dieci e un quarto").as_deref(), Some("10:15"));
    assert_eq!(time("pt", "às 10h30").as_deref(), Some("10:30"));
    assert_eq!(time("pt", "ao meio dia").as_deref(), Some("12:00"));
    assert_eq!(time("es", "a las 25"), None);
}

#[test]
fn number_words_all_languages() {
    let now = at(2026, 1, 1);
    let dob = |lang: &str, text: &str| slots(lang, text, now).date_of_birth;
    assert_eq!(dob("es", "nací el veintitrés de mayo de mil novecientos noventa y nueve").as_deref(), Some("1999-05-23"));
    assert_eq!(date("es", "el 2 de marzo de dos mil veintiséis", now).as_deref(), Some("2026-03-02"));
    assert_eq!(dob("en", "born on the twenty first of may nineteen eighty").as_deref(), Some("1980-05-21"));
    assert_eq!(date("en", "march 2nd two thousand twenty six", now).as_deref(), Some("2026-03-02"));
    assert_eq!(dob("it", "nato il ventotto giugno millenovecentosettantatré").as_deref(), Some("1973-06-28"));
    assert_eq!(date("it", "il 2 marzo duemilaventisei", now).as_deref(), Some("2026-03-02"));
    assert_eq!(dob("pt", "nasci a vinte e três de maio de mil novecentos e noventa").as_deref(), Some("1990-05-23"));
    let digits = |lang: &str, text: &str| slots(lang, text, now).digits;
    assert_eq!(digits("es", "seiscientos doce treinta y cuatro cincuenta y seis").as_deref(), Some("6123456"));
    assert_eq!(digits("en", "five five five oh one nine nine").as_deref(), Some("5550199"));
    assert_eq!(digits("it", "tre quattro sette").as_deref(), Some("347"));
}

#[test]
fn odd_inputs_never_panic() {
    let vocab = Vocabulary::default();
    let long = "mañana a las diez ".repeat(600);
    let nines = "9".repeat(5000);
    let odd = [
        "",
        " ",
        "😀😀😀",
        "?!¿¡...",
        "0",
        "99999999999999999999999",
        "10:99",
        "3/13/2026",
        "31/2/2026",
        "1.2.3.4.5",
        "a las",
        "el",
        "doctora",
        "mil mil mil mil",
        "novecientos novecientos",
        "la",
        "ventiventiventiventi",
        "\u{0}\u{7}\t\n",
        "日本語のテキスト",
        "ⅷ ½ ²",
        long.as_str(),
        nines.as_str(),
    ];
    for lang in ["es", "en", "it", "pt"] {
        let lex = lex(lang);
        for text in odd {
            let u = understand(text, &lex, &vocab, at(2026, 11, 23));
            serde_json::to_string(&u).expect("serializable");
        }
    }
    let u = understand("", &lex("es"), &vocab, at(2026, 11, 23));
    assert_eq!(u.intent, Intent::Unknown);
    assert_eq!(u.slots, Slots::default());
}

#[test]
fn lexicon_errors_name_the_key() {
    let err = |text: &str| Lexicon::from_toml_str("xx", text).expect_err("must fail").to_string();
    assert!(err("nope = [").contains("not valid TOML"));
    assert!(err("[prompts]\nhello = \"hi\"").contains("`nlu`"));
    assert!(err("[nlu]\nfillers = []\n[nlu.intents]\n").contains("nlu.intents.emergency"));
    assert!(err("[nlu]\nfillers = [1]").contains("nlu.fillers[0]"));
    let missing = Lexicon::load(Path::new("/nonexistent"), "es").expect_err("no file");
    assert!(matches!(missing, LexiconError::Io { .. }));
}

#[test]
fn unknown_top_level_tables_are_ignored() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let text = std::fs::read_to_string(dir.join("es.toml")).expect("bundled file");
    // The bundled file carries the assistant's `[prompts]` table already.
    assert!(text.contains("[prompts]"));
    let with_prompts = format!("[other.deep]\nx = 1\n{text}");
    assert!(Lexicon::from_toml_str("es", &with_prompts).is_ok());
}

/// An hour said without a part of day is read within the clinic's opening
/// hours, for the day said (or any day); when both readings or neither
/// fall within them, 1–7 are afternoon as before.
#[test]
fn an_hour_without_part_of_day_is_read_within_opening_hours() {
    let mut v = Vocabulary::default();
    for day in ["monday", "tuesday", "wednesday", "thursday", "friday"] {
        v.opening_hours.insert(day.into(), vec!["15:00-22:00".into()]);
    }
    v.opening_hours.insert("saturday".into(), vec!["07:00-13:00".into()]);
    // 2026-11-23 is a Monday; the 28th a Saturday.
    let t = |lang: &str, text: &str| understand(text, &lex(lang), &v, at(2026, 11, 23)).slots.time;
    assert_eq!(t("es", "el lunes a las nueve").as_deref(), Some("21:00"));
    assert_eq!(t("es", "el sábado a las nueve").as_deref(), Some("09:00"));
    assert_eq!(t("it", "sabato alle sette").as_deref(), Some("07:00"), "not 19:00: closed then on Saturdays");
    assert_eq!(t("en", "on the 30th at eight").as_deref(), Some("20:00"), "the 30th is a Monday");
    assert_eq!(t("pt", "às nove").as_deref(), Some("09:00"), "no day said: both readings are open some day, as said");
    // Without hours, the old rule.
    assert_eq!(time("es", "a las nueve").as_deref(), Some("09:00"));
    assert_eq!(time("es", "a las seis").as_deref(), Some("18:00"));
    // A part of day or am/pm always wins.
    assert_eq!(t("es", "el lunes a las nueve de la mañana").as_deref(), Some("09:00"));
}

/// "à tarde" / "a la tarde" after a day number is the part of the day, not
/// an ordinal suffix ("14ª"), also when weekday and number disagree.
#[test]
fn a_part_of_day_after_a_day_number_is_kept() {
    let now = at(2026, 12, 7);
    for (lang, text) in [
        ("pt", "dia 14 à tarde"),
        ("pt", "quero na sexta-feira dia 25 à tarde"),
        ("es", "el día 14 a la tarde"),
        ("it", "il 14 al pomeriggio"),
        ("en", "friday the 25th in the afternoon"),
    ] {
        let s = slots(lang, text, now);
        assert!(s.date.is_some(), "{lang} {text:?}: {s:?}");
        assert_eq!(s.part_of_day.as_deref(), Some("afternoon"), "{lang} {text:?}: {s:?}");
    }
    // The 24th is a Thursday: both readings kept, and the afternoon.
    let s = slots("pt", "sexta-feira 24 à tarde", now);
    assert!(s.date_conflict.is_some() && s.date.is_none(), "{s:?}");
    assert_eq!(s.part_of_day.as_deref(), Some("afternoon"), "{s:?}");
    // A glued suffix is still an ordinal: "o dia 1º".
    assert_eq!(date("pt", "no dia 1º de janeiro", now).as_deref(), Some("2027-01-01"));
}

/// "El día siguiente" is the day after the one being talked about; the
/// NLU says so, with tomorrow as the date when nothing is.
#[test]
fn the_day_after_is_marked_as_relative_to_the_day_discussed() {
    let now = at(2026, 12, 7);
    for (lang, text) in [
        ("es", "¿y el día siguiente?"),
        ("es", "mejor al día siguiente por la tarde"),
        ("en", "what about the day after"),
        ("en", "the following day"),
        ("it", "e il giorno dopo?"),
        ("pt", "e no dia seguinte?"),
    ] {
        let s = slots(lang, text, now);
        assert!(s.after_discussed, "{lang} {text:?}: {s:?}");
        assert_eq!(s.date.as_deref(), Some("2026-12-08"), "{lang} {text:?}");
    }
    assert_eq!(slots("es", "mejor al día siguiente por la tarde", now).part_of_day.as_deref(), Some("afternoon"));
    for (lang, text) in [("en", "the day after tomorrow"), ("es", "el día después de mañana"), ("es", "pasado mañana")] {
        let s = slots(lang, text, now);
        assert!(!s.after_discussed, "{lang} {text:?}: {s:?}");
        assert_eq!(s.date.as_deref(), Some("2026-12-09"), "{lang} {text:?}");
        assert_eq!(s.part_of_day, None, "{lang} {text:?}");
    }
}

/// "El próximo viernes" is the coming Friday by default, and next week's
/// where the clinic says so; "este viernes" and "el viernes" are always
/// the coming one.
#[test]
fn next_weekday_reads_as_the_clinic_says() {
    let monday = at(2026, 12, 7);
    let following = Vocabulary { next_weekday_following_week: true, ..Vocabulary::default() };
    let read = |lang: &str, text: &str, vocab: &Vocabulary, now| understand(text, &lex(lang), vocab, now).slots.date;
    for (lang, text) in
        [("es", "el próximo viernes"), ("en", "next friday"), ("it", "il prossimo venerdì"), ("pt", "na próxima sexta-feira")]
    {
        assert_eq!(read(lang, text, &Vocabulary::default(), monday).as_deref(), Some("2026-12-11"), "{lang} {text:?}");
        assert_eq!(read(lang, text, &following, monday).as_deref(), Some("2026-12-18"), "{lang} {text:?}");
        // On Saturday the coming Friday is next week's already.
        assert_eq!(read(lang, text, &following, at(2026, 12, 12)).as_deref(), Some("2026-12-18"), "{lang} {text:?}");
    }
    for (lang, text) in [("es", "este viernes"), ("es", "el viernes"), ("en", "this friday"), ("pt", "nesta sexta-feira")] {
        assert_eq!(read(lang, text, &following, monday).as_deref(), Some("2026-12-11"), "{lang} {text:?}");
    }
}
