//! A local stand-in for the WeCom, DingTalk and Feishu robot platforms
