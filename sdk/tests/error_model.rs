//! The run methods' error model: a missing variation is an outcome (`NotMatched`, `NotDecided`,
//! `NotReady`), a rule error is an error that every run method hands to `?`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::{
    BucketingAttributes, Core, Decision, Error, NotMatchedReason, ProjectConfig, RuleError,
    RuleErrors,
};
use support::{DEMO_CONFIG, Recorder};

fn checkout() -> BucketingAttributes {
    BucketingAttributes::new()
        .location_property("url", "https://shop.example/checkout")
        .visitor_property("plan", "premium")
}

/// Before the first config every decision is `NotReady` (it was `NotMatched`, which reads as
/// "the visitor does not qualify"); once a config is installed the same call decides.
#[test]
fn before_the_first_config_decisions_are_not_ready() {
    // The recorder answers every config fetch with an empty body: no config ever arrives.
    let rec = Recorder::default();
    let core = Core::builder()
        .sdk_key("10/20")
        .transport(rec.clone())
        .tracking(false)
        .environment("production")
        .build()
        .unwrap();
    assert!(!core.is_ready());
    let ctx = core.create_context("visitor-1", None);
    let d = ctx.run_experience("checkout-button", &checkout());
    assert_eq!(d, Decision::NotReady);
    assert!(!d.is_variation());
    let f = ctx.run_feature("search-v2", &checkout());
    assert!(
        f.not_ready && f.entries.is_empty() && !f.is_enabled(),
        "{f:?}"
    );
    assert!(matches!(
        f.variable::<bool>("enabled"),
        Err(convert_sdk::VariableError::NotDecided(_))
    ));
    // A conversion says so too (it read as "goal not found").
    assert_eq!(
        ctx.track_conversion("purchase", &Default::default()),
        Ok(convert_sdk::ConversionOutcome::NotReady)
    );

    core.set_config(ProjectConfig::from_json(DEMO_CONFIG).unwrap());
    let d = ctx.run_experience("checkout-button", &checkout());
    assert!(d.is_variation(), "{d:?}");
    assert!(
        ctx.track_conversion("purchase", &Default::default())
            .is_ok_and(|o| o.fired())
    );
    let f = ctx.run_feature("search-v2", &checkout());
    assert!(!f.not_ready, "{f:?}");
    // A config without the experience: not matched, not "not ready".
    assert_eq!(
        ctx.run_experience("no-such-experience", &checkout()),
        Decision::NotMatched(NotMatchedReason::UnknownExperience)
    );
}

/// Every run method composes with `?`, into `convert_sdk::Error` or a boxed error.
#[test]
fn every_run_method_composes_with_question_mark() {
    fn with_sdk_error(core: &Core) -> Result<usize, Error> {
        let ctx = core.create_context("visitor-1", None);
        let d = ctx
            .run_experience("checkout-button", &checkout())
            .into_result()?;
        let f = ctx.run_feature("search-v2", &checkout()).into_result()?;
        let all = ctx.run_features(&checkout())?;
        Ok(usize::from(d.is_variation()) + f.entries.len() + all.len())
    }
    fn boxed(core: &Core) -> Result<usize, Box<dyn std::error::Error>> {
        let ctx = core.create_context("visitor-1", None);
        Ok(ctx.run_features(&checkout())?.len())
    }
    let core = support::demo_core();
    assert!(with_sdk_error(&core).unwrap() >= 2);
    assert!(boxed(&core).unwrap() >= 1);
}

#[test]
fn rule_errors_become_errors() {
    assert_eq!(
        Decision::RuleError(RuleError::NeedMoreData).into_result(),
        Err(RuleError::NeedMoreData)
    );
    let not_matched = Decision::NotMatched(NotMatchedReason::Audience);
    assert_eq!(not_matched.clone().into_result(), Ok(not_matched));
    let errs = RuleErrors::from(vec![RuleError::NoDataFound, RuleError::NeedMoreData]);
    assert_eq!(errs.len(), 2);
    assert_eq!(
        errs.to_string(),
        "a targeting rule needs visitor data that was not given: convert.com_no_data_found convert.com_need_more_data"
    );
    let e: Error = errs.clone().into();
    assert!(matches!(&e, Error::Rule(r) if *r == errs), "{e:?}");
    let e: Error = RuleError::NoDataFound.into();
    assert!(
        matches!(&e, Error::Rule(r) if r[..] == [RuleError::NoDataFound]),
        "{e:?}"
    );
}
