//! The access room alone: logins, checks, and the record functions.

use std::net::IpAddr;

use super::*;

fn local() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn remote() -> IpAddr {
    "10.1.2.3".parse().unwrap()
}

/// Records with vhost "/" and "v", user "guest" (loopback-only) and "app".
fn access() -> Access {
    let access = Access::in_memory(vec!["guest".into()]);
    for vhost in ["/", "v"] {
        access.put_vhost(vhost, VHostMetadata::default()).unwrap();
    }
    access
        .add_user("guest", "guest", vec![tag::ADMINISTRATOR.into()])
        .unwrap();
    access.add_user("app", "secret", vec![]).unwrap();
    access
        .set_permissions("guest", "/", ".*", ".*", ".*")
        .unwrap();
    access
}

fn plain(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

#[test]
fn login_checks_the_password_hash_and_loopback_users() {
    let access = access();
    let guest = access
        .login("PLAIN", &plain("guest", "guest"), local())
        .unwrap();
    assert_eq!(guest.name, "guest");
    assert!(guest.has_tag(tag::ADMINISTRATOR));
    assert_eq!(
        access.login("PLAIN", &plain("guest", "nope"), local()),
        Err(AuthError::Refused(
            "user 'guest' - invalid credentials".into()
        ))
    );
    assert_eq!(
        access.login("PLAIN", &plain("nobody", "x"), local()),
        Err(AuthError::Refused(
            "user 'nobody' - invalid credentials".into()
        ))
    );
    assert_eq!(
        access.login("PLAIN", &plain("guest", "guest"), remote()),
        Err(AuthError::Refused(
            "user 'guest' can only connect via localhost".into()
        ))
    );
    assert!(
        access
            .login("PLAIN", &plain("app", "secret"), remote())
            .is_ok()
    );
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    assert!(
        access
            .login("PLAIN", &plain("guest", "guest"), mapped)
            .is_ok()
    );
}

#[test]
fn blank_and_missing_passwords_never_log_in() {
    let access = access();
    let Err(AuthError::Refused(why)) = access.login("PLAIN", &plain("app", ""), local()) else {
        panic!("a blank password logged in");
    };
    assert!(why.starts_with("user 'app' attempted to log in with a blank password"));
    access.clear_password("app").unwrap();
    assert!(
        access
            .login("PLAIN", &plain("app", "secret"), local())
            .is_err()
    );
    assert_eq!(access.user("app").unwrap().password_hash, "");
    // A new user without a password has the hash of an empty one.
    access.put_user("nopw", UserSpec::default()).unwrap();
    assert!(!access.user("nopw").unwrap().password_hash.is_empty());
    assert!(access.login("PLAIN", &plain("nopw", ""), local()).is_err());
}

#[test]
fn vhost_access_needs_a_permission_there() {
    let access = access();
    assert!(access.may_open("guest", "/"));
    assert!(!access.may_open("guest", "v"));
    assert!(!access.may_open("app", "/"));
    assert!(!access.may_open("guest", "missing"));
    // Any permission will do, even one that matches nothing.
    access.set_permissions("app", "v", "", "", "").unwrap();
    assert!(access.may_open("app", "v"));
}

#[test]
fn resource_checks_match_unanchored_with_rabbitmq_texts() {
    let access = access();
    access
        .set_permissions("app", "v", "^app-", "", "q")
        .unwrap();
    let check = |kind, name: &str, p| access.check_resource("app", "v", kind, name.as_bytes(), p);
    assert!(check(ResourceKind::Queue, "app-1", Permission::Configure).is_ok());
    assert!(check(ResourceKind::Queue, "my-q", Permission::Read).is_ok());
    let refused = check(ResourceKind::Queue, "other", Permission::Configure).unwrap_err();
    assert_eq!(
        refused.reply_text(),
        "ACCESS_REFUSED - access to queue 'other' in vhost 'v' refused for user 'app'"
    );
    // An empty pattern matches only the empty name; the default exchange
    // is checked as amq.default.
    let refused = check(ResourceKind::Exchange, "", Permission::Write).unwrap_err();
    assert_eq!(
        refused.explanation,
        "access to exchange 'amq.default' in vhost 'v' refused for user 'app'"
    );
    assert!(check(ResourceKind::Queue, "", Permission::Write).is_ok());
    // No permissions in the vhost at all: refused.
    assert!(
        access
            .check_resource("app", "/", ResourceKind::Queue, b"q", Permission::Read)
            .is_err()
    );
}

#[test]
fn topic_checks_expand_username_and_vhost() {
    let access = access();
    assert!(!access.has_topic_permissions());
    access
        .set_topic_permissions(
            "app",
            "v",
            "amq.topic",
            "^{username}\\.{vhost}\\.",
            "^r\\.{client_id}$",
        )
        .unwrap();
    assert!(access.has_topic_permissions());
    let check =
        |x: &str, key: &str, p| access.check_topic("app", "v", x.as_bytes(), key.as_bytes(), p);
    assert!(check("amq.topic", "app.v.x", Permission::Write).is_ok());
    assert_eq!(
        check("amq.topic", "other.key", Permission::Write)
            .unwrap_err()
            .explanation,
        "access to topic 'other.key' in exchange 'amq.topic' in vhost 'v' refused for user 'app'"
    );
    // AMQP 0-9-1 connections have no client id: the placeholder stays.
    assert!(check("amq.topic", "r.{client_id}", Permission::Read).is_ok());
    assert!(check("amq.topic", "r.abc", Permission::Read).is_err());
    // Exchanges without topic permissions are open.
    assert!(check("other", "anything", Permission::Write).is_ok());
    access.clear_topic_permissions("app", "v", None).unwrap();
    assert!(!access.has_topic_permissions());
    assert!(check("amq.topic", "other.key", Permission::Write).is_ok());
}

#[test]
fn setting_permissions_validates_patterns_then_names() {
    let access = access();
    let error = access
        .set_permissions("nobody", "v", "(", ".*", ".*")
        .unwrap_err();
    assert!(matches!(error, AccessError::InvalidRegexp { ref pattern, .. } if pattern == "("));
    assert!(matches!(
        access.set_permissions("nobody", "v", ".*", ".*", ".*"),
        Err(AccessError::NoSuchUser(_))
    ));
    assert!(matches!(
        access.set_permissions("app", "missing", ".*", ".*", ".*"),
        Err(AccessError::NoSuchVHost(_))
    ));
    assert_eq!(
        access.permissions(),
        vec![PermissionInfo {
            user: "guest".into(),
            vhost: "/".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }]
    );
}

#[test]
fn put_user_creates_updates_and_imports_hashes() {
    let access = access();
    let rabbitmq_hash = "5a886MdzFc8/SzHvdnqDZ1S8AB7123Ai1w0qpMmKBJK70Kva"; // "secret"
    let spec = UserSpec {
        credentials: Credentials::Hash {
            hash: rabbitmq_hash.into(),
            algorithm: None,
        },
        tags: vec!["monitoring".into(), " management ".into()],
        limits: None,
    };
    assert_eq!(access.put_user("imported", spec).unwrap(), Put::Created);
    let user = access.user("imported").unwrap();
    assert_eq!(user.password_hash, rabbitmq_hash);
    assert_eq!(user.hashing_algorithm, HashingAlgorithm::Sha256);
    assert_eq!(user.tags, vec!["monitoring", "management"]);
    assert!(
        access
            .login("PLAIN", &plain("imported", "secret"), remote())
            .is_ok()
    );
    let update = UserSpec {
        credentials: Credentials::Password("new".into()),
        tags: vec![],
        limits: None,
    };
    assert_eq!(access.put_user("imported", update).unwrap(), Put::Updated);
    assert!(
        access
            .login("PLAIN", &plain("imported", "new"), remote())
            .is_ok()
    );
    assert!(matches!(
        access.add_user("imported", "x", vec![]),
        Err(AccessError::UserAlreadyExists(_))
    ));
    let bad = UserSpec {
        credentials: Credentials::Hash {
            hash: "!!".into(),
            algorithm: None,
        },
        ..UserSpec::default()
    };
    assert!(matches!(
        access.put_user("bad", bad),
        Err(AccessError::InvalidPasswordHash(_))
    ));
}

#[test]
fn deleting_a_user_or_vhost_takes_its_permissions() {
    let access = access();
    access
        .set_permissions("app", "v", ".*", ".*", ".*")
        .unwrap();
    access
        .set_topic_permissions("app", "v", "x", ".*", ".*")
        .unwrap();
    access
        .set_permissions("guest", "v", ".*", ".*", ".*")
        .unwrap();
    access.delete_user("app").unwrap();
    assert!(access.permission("app", "v").is_none());
    assert!(access.topic_permissions().is_empty());
    assert!(matches!(
        access.delete_user("app"),
        Err(AccessError::NoSuchUser(_))
    ));
    access.delete_vhost("v").unwrap();
    assert!(access.permission("guest", "v").is_none());
    assert!(access.permission("guest", "/").is_some());
    assert!(!access.vhost_exists("v"));
}

#[test]
fn limits_are_kept_by_name() {
    let access = access();
    access
        .set_vhost_limit("v", VHostLimit::MaxQueues, 3)
        .unwrap();
    access
        .set_vhost_limit("v", VHostLimit::MaxConnections, -1)
        .unwrap();
    assert_eq!(access.vhost_limit("v", VHostLimit::MaxQueues), Some(3));
    assert_eq!(access.vhost_limit("v", VHostLimit::MaxConnections), None);
    assert_eq!(
        access
            .vhost("v")
            .unwrap()
            .limits
            .get(VHostLimit::MaxConnections),
        Some(-1)
    );
    access
        .clear_vhost_limit("v", VHostLimit::MaxQueues)
        .unwrap();
    assert_eq!(access.vhost_limit("v", VHostLimit::MaxQueues), None);
    access
        .set_user_limit("app", UserLimit::MaxChannels, 0)
        .unwrap();
    assert_eq!(access.user_limit("app", UserLimit::MaxChannels), Some(0));
    assert_eq!(access.user_limits().len(), 1);
    access.clear_user_limits("app").unwrap();
    assert!(access.user_limits().is_empty());
    assert!(matches!(
        access.set_vhost_limit("missing", VHostLimit::MaxQueues, 1),
        Err(AccessError::NoSuchVHost(_))
    ));
}

#[test]
fn put_vhost_keeps_the_default_queue_type_of_an_existing_vhost() {
    let access = access();
    let quorum = VHostMetadata {
        description: Some("orders".into()),
        tags: vec!["prod".into()],
        default_queue_type: Some(QueueType::Quorum),
    };
    assert_eq!(access.put_vhost("orders", quorum).unwrap(), Put::Created);
    let update = VHostMetadata {
        description: Some("renamed".into()),
        ..VHostMetadata::default()
    };
    assert_eq!(access.put_vhost("orders", update).unwrap(), Put::Updated);
    let info = access.vhost("orders").unwrap();
    assert_eq!(info.metadata.description.as_deref(), Some("renamed"));
    assert!(info.metadata.tags.is_empty());
    assert_eq!(access.default_queue_type("orders"), Some(QueueType::Quorum));
    assert!(QueueType::from_name("lazy").is_err());
}

#[test]
fn records_survive_a_reopen() {
    let dir = std::env::temp_dir().join(format!("warren-access-reopen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let store = Store::open(&dir, false, 1 << 20).unwrap();
        let (access, first) = Access::open(store.clone(), vec![]).unwrap();
        assert!(first);
        access.put_vhost("v", VHostMetadata::default()).unwrap();
        access
            .add_user("app", "secret", vec!["impersonator".into()])
            .unwrap();
        access.set_permissions("app", "v", "c", "w", "r").unwrap();
        access
            .set_topic_permissions("app", "v", "amq.topic", "tw", "tr")
            .unwrap();
        access
            .set_user_limit("app", UserLimit::MaxConnections, 2)
            .unwrap();
        store.close();
    }
    let store = Store::open(&dir, false, 1 << 20).unwrap();
    let (access, first) = Access::open(store.clone(), vec![]).unwrap();
    assert!(!first);
    assert!(
        access
            .login("PLAIN", &plain("app", "secret"), remote())
            .is_ok()
    );
    assert_eq!(access.permission("app", "v").unwrap().write, "w");
    assert_eq!(access.topic_permissions()[0].read, "tr");
    assert!(access.has_topic_permissions());
    assert_eq!(access.user_limit("app", UserLimit::MaxConnections), Some(2));
    store.close();
    drop((access, store));
    let _ = std::fs::remove_dir_all(&dir);
}
