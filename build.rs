// Lets tests/real_model.rs un-ignore itself when CLINIVOX_TEST_MODELS=1.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(clinivox_test_models)");
    println!("cargo::rerun-if-env-changed=CLINIVOX_TEST_MODELS");
    if std::env::var("CLINIVOX_TEST_MODELS").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=clinivox_test_models");
    }
}
